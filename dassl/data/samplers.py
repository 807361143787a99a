"""Samplers by name (`DATALOADER.*.SAMPLER`)."""
from torch.utils.data.sampler import RandomSampler, SequentialSampler

AVAI_SAMPLERS = ["RandomSampler", "SequentialSampler"]


def build_sampler(sampler_type, cfg=None, data_source=None, batch_size=32, n_domain=0, n_ins=16):
    if sampler_type == "RandomSampler":
        return RandomSampler(data_source)
    if sampler_type == "SequentialSampler":
        return SequentialSampler(data_source)
    raise ValueError(f'Sampler "{sampler_type}" is not supported; choose one of {AVAI_SAMPLERS}')
