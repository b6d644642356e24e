"""``dassl.data.data_manager``: the dataset from this package's registry, then transforms and
loaders (the loader builder and the wrapper are borrowed from the bundled engine)."""
from disakit.dasslite.data.data_manager import DatasetWrapper, build_data_loader, format_table

from .datasets import build_dataset
from .transforms import build_transform


class DataManager:

    def __init__(self, cfg, custom_tfm_train=None, custom_tfm_test=None, dataset_wrapper=None):
        dataset = build_dataset(cfg)
        tfm_train = custom_tfm_train or build_transform(cfg, is_train=True)
        tfm_test = custom_tfm_test or build_transform(cfg, is_train=False)
        x, test = cfg.DATALOADER.TRAIN_X, cfg.DATALOADER.TEST
        self.train_loader_x = build_data_loader(
            cfg, sampler_type=x.SAMPLER, data_source=dataset.train_x, batch_size=x.BATCH_SIZE,
            n_domain=x.N_DOMAIN, n_ins=x.N_INS, tfm=tfm_train, is_train=True,
            dataset_wrapper=dataset_wrapper)
        self.train_loader_u = None  # no unlabelled data in prompt learning
        self.val_loader = None
        if dataset.val:
            self.val_loader = build_data_loader(
                cfg, sampler_type=test.SAMPLER, data_source=dataset.val,
                batch_size=test.BATCH_SIZE, tfm=tfm_test, is_train=False,
                dataset_wrapper=dataset_wrapper)
        self.test_loader = build_data_loader(
            cfg, sampler_type=test.SAMPLER, data_source=dataset.test, batch_size=test.BATCH_SIZE,
            tfm=tfm_test, is_train=False, dataset_wrapper=dataset_wrapper)
        self._num_classes = dataset.num_classes
        self._num_source_domains = len(cfg.DATASET.SOURCE_DOMAINS)
        self._lab2cname = dataset.lab2cname
        self.dataset = dataset
        if cfg.VERBOSE:
            print(format_table([["Dataset", cfg.DATASET.NAME],
                                ["# classes", f"{self._num_classes:,}"],
                                ["# train_x", f"{len(dataset.train_x):,}"],
                                ["# test", f"{len(dataset.test):,}"]]))

    @property
    def num_classes(self):
        return self._num_classes

    @property
    def num_source_domains(self):
        return self._num_source_domains

    @property
    def lab2cname(self):
        return self._lab2cname
