"""Utilities mirroring ``dassl.utils``: registry, logging, meters, I/O and checkpoints."""
from .logger import Logger, setup_logger
from .meters import AverageMeter, MetricMeter
from .registry import Registry, check_availability
from .tools import (
    check_isfile,
    collect_env_info,
    get_most_similar_str_to_a_from_b,
    get_rng_state,
    listdir_nohidden,
    mkdir_if_missing,
    read_image,
    read_json,
    set_random_seed,
    set_rng_state,
    tolist_if_not,
    write_json,
)
from .torchtools import (
    RESUME_FILE,
    count_num_param,
    init_network_weights,
    load_checkpoint,
    load_pretrained_weights,
    open_all_layers,
    open_specified_layers,
    remove_stale_temp_files,
    restore_checkpoint,
    resume_from_checkpoint,
    save_checkpoint,
)

__all__ = [
    "Registry", "check_availability", "setup_logger", "Logger", "set_random_seed",
    "collect_env_info", "mkdir_if_missing", "check_isfile", "read_json", "write_json",
    "read_image", "listdir_nohidden", "tolist_if_not", "get_most_similar_str_to_a_from_b",
    "save_checkpoint", "load_checkpoint", "resume_from_checkpoint", "load_pretrained_weights",
    "count_num_param", "open_all_layers", "open_specified_layers", "init_network_weights",
    "AverageMeter", "MetricMeter", "restore_checkpoint", "get_rng_state", "set_rng_state",
    "RESUME_FILE", "remove_stale_temp_files",
]
