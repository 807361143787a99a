"""`Datum`, `DatasetBase` and few-shot sampling (Dassl `dassl.data.datasets.base_dataset`).

`generate_fewshot_dataset` reproduces Dassl's random draws exactly: per label, in order of
first appearance, `random.sample(items, K)` from Python's global `random`, so the same seed
and split file select the same images as the reference code.
"""
import os.path as osp
import random
from collections import defaultdict

from dassl.utils.errors import TestSplitSealed


class Datum:
    """One labelled image. `verify=False` skips the existence check for trusted, cached lists
    (e.g. ImageNet's 1.28M training images), where a stat per image would dominate start-up."""

    __slots__ = ("_impath", "_label", "_domain", "_classname")

    def __init__(self, impath="", label=0, domain=0, classname="", verify=True):
        if not isinstance(impath, str):
            raise TypeError(f"Datum impath must be a str, got {type(impath).__name__}: {impath!r}")
        if verify and not osp.isfile(impath):
            raise FileNotFoundError(f'Image file not found: "{impath}"')
        self._impath = impath
        self._label = int(label)
        self._domain = int(domain)
        self._classname = classname

    @property
    def impath(self):
        return self._impath

    @property
    def label(self):
        return self._label

    @property
    def domain(self):
        return self._domain

    @property
    def classname(self):
        return self._classname

    def __repr__(self):
        return f"Datum(impath={self._impath!r}, label={self._label}, domain={self._domain}, classname={self._classname!r})"

    def __eq__(self, other):
        return isinstance(other, Datum) and (self._impath, self._label, self._domain, self._classname) == (
            other._impath, other._label, other._domain, other._classname)

    def __hash__(self):
        return hash((self._impath, self._label, self._domain, self._classname))


class DatasetBase:
    """Holds the splits; class count and names are derived from `train_x`."""

    dataset_dir = ""  # the folder under DATASET.ROOT
    domains = []  # domain names, for domain-generalisation datasets

    def __init__(self, train_x=None, train_u=None, val=None, test=None):
        self._train_x = train_x
        self._train_u = train_u
        self._val = val
        self._test = test
        self._test_sealed = ""  # why the test split may not be read now ("": it may)
        self._num_classes = self.get_num_classes(train_x)
        self._lab2cname, self._classnames = self.get_lab2cname(train_x)

    @property
    def train_x(self):
        return self._train_x

    @property
    def train_u(self):
        return self._train_u

    @property
    def val(self):
        return self._val

    @property
    def test(self):
        reason = getattr(self, "_test_sealed", "")
        if reason:
            raise TestSplitSealed(reason)
        return self._test

    def seal_test(self, reason):
        """Make every read of `test` raise `TestSplitSealed(reason)` until `unseal_test()`."""
        self._test_sealed = reason

    def unseal_test(self):
        self._test_sealed = ""

    @property
    def test_size(self):
        """How many test items there are (a count reveals no image, so it stays readable)."""
        return len(self._test or [])

    @property
    def lab2cname(self):
        return self._lab2cname

    @property
    def classnames(self):
        return self._classnames

    @property
    def num_classes(self):
        return self._num_classes

    @staticmethod
    def get_num_classes(data_source):
        if not data_source:
            return 0
        return max(item.label for item in data_source) + 1

    @staticmethod
    def get_lab2cname(data_source):
        if not data_source:
            return {}, []
        mapping = {item.label: item.classname for item in data_source}
        labels = sorted(mapping)
        return mapping, [mapping[label] for label in labels]

    def check_input_domains(self, source_domains, target_domains):
        for domain in list(source_domains) + list(target_domains):
            if domain not in self.domains:
                raise ValueError(f'Domain "{domain}" is not in {self.domains} of {type(self).__name__}')

    def generate_fewshot_dataset(self, *data_sources, num_shots=-1, repeat=False):
        """Sample `num_shots` items per label from each source (Dassl's algorithm)."""
        if num_shots < 1:
            return data_sources[0] if len(data_sources) == 1 else data_sources
        print(f"Creating a {num_shots}-shot dataset")
        output = []
        for data_source in data_sources:
            dataset = []
            for label, items in self.split_dataset_by_label(data_source).items():
                if len(items) >= num_shots:
                    sampled = random.sample(items, num_shots)
                elif repeat:
                    sampled = random.choices(items, k=num_shots)
                else:
                    print(f'Warning: class "{items[0].classname}" (label {label}) has only {len(items)} '
                          f"images (< {num_shots} shots); taking all of them")
                    sampled = items
                dataset.extend(sampled)
            output.append(dataset)
        return output[0] if len(output) == 1 else output

    @staticmethod
    def split_dataset_by_label(data_source):
        """Label -> items, labels in order of first appearance, items in list order."""
        output = defaultdict(list)
        for item in data_source:
            output[item.label].append(item)
        return output

    @staticmethod
    def split_dataset_by_domain(data_source):
        output = defaultdict(list)
        for item in data_source:
            output[item.domain].append(item)
        return output
