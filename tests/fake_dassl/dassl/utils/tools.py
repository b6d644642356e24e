"""``dassl.utils.tools`` (borrowed from the bundled engine: not what these tests are about)."""
from disakit.dasslite.utils import (
                                    check_availability,
                                    check_isfile,
                                    collect_env_info,
                                    listdir_nohidden,
                                    mkdir_if_missing,
                                    read_image,
                                    read_json,
                                    set_random_seed,
                                    tolist_if_not,
                                    write_json,
)

__all__ = ["mkdir_if_missing", "check_isfile", "read_json", "write_json", "set_random_seed",
           "collect_env_info", "listdir_nohidden", "read_image", "check_availability",
           "tolist_if_not"]
