"""Which numeric precision a CLIP trainer can really use on its device.

fp16 CLIP kernels and torch.cuda.amp only exist on CUDA; on CPU we fall back to fp32
(and say so once) instead of crashing halfway through the first batch.
"""
import torch

from dassl.config.merge import ConfigError

PRECISIONS = ("fp16", "fp32", "amp")


def effective_precision(requested, device, key="PREC"):
    """Return the precision to use for `requested` ("fp16" | "fp32" | "amp") on `device`.

    `key` names the config key the value came from, so an invalid value is reported
    where the user can fix it.
    """
    if requested not in PRECISIONS:
        raise ConfigError(f"{key} = {requested!r} is not a valid precision; use one of {PRECISIONS}")
    device = torch.device(device)
    if device.type != "cuda" and requested != "fp32":
        print(f"{key} = {requested} needs a CUDA device; running in fp32 on {device.type}")
        return "fp32"
    return requested
