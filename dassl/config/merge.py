"""Merging YAML files and KEY VALUE lists into a config, with errors that say where.

yacs raises a bare `KeyError('Non-existent config key: X')`; researchers then have to guess
which of three YAML files or the command line held the typo. These wrappers name the source.
"""
import os.path as osp

from yacs.config import CfgNode

from dassl.utils.errors import UserError


class ConfigError(UserError, ValueError):
    """A config file, key or value the user can fix; the message names it."""


def merge_from_file(cfg, path):
    if not osp.isfile(path):
        raise ConfigError(f'Config file not found: "{path}"')
    try:
        with open(path) as f:
            other = CfgNode.load_cfg(f)
    except Exception as e:
        raise ConfigError(f'Cannot parse config file "{path}": {e}') from e
    _check_keys(cfg, other, path)
    try:
        cfg.merge_from_other_cfg(other)
    except Exception as e:
        raise ConfigError(f'Bad value in config file "{path}": {e}') from e


def _check_keys(cfg, other, source, prefix=""):
    for key, value in other.items():
        full = prefix + key
        if key not in cfg:
            raise ConfigError(f'Unknown config key "{full}" in {source}; check the spelling '
                              f"(known keys here: {', '.join(sorted(cfg.keys()))})")
        if isinstance(value, dict) and isinstance(cfg[key], CfgNode):
            _check_keys(cfg[key], value, source, full + ".")


def merge_from_list(cfg, opts, source="the command line"):
    if len(opts) % 2:
        raise ConfigError(f"Overrides on {source} must be KEY VALUE pairs; got an odd count: {list(opts)}")
    for key, value in zip(opts[0::2], opts[1::2]):
        node = cfg
        parts = key.split(".")
        for depth, part in enumerate(parts):
            if not isinstance(node, CfgNode) or part not in node:
                raise ConfigError(f'Unknown config key "{key}" on {source} '
                                  f'("{".".join(parts[:depth + 1])}" does not exist)')
            node = node[part]
        if isinstance(node, float) and _is_int_literal(value):
            value = str(float(value))  # "OPTIM.LR 1" means 1.0; yacs would reject the int
        try:
            cfg.merge_from_list([key, value])
        except Exception as e:
            raise ConfigError(f'Bad value for "{key}" on {source}: {value!r} ({e})') from e


def _is_int_literal(value):
    try:
        return isinstance(value, str) and not isinstance(value, bool) and int(value) == float(value)
    except ValueError:
        return False
