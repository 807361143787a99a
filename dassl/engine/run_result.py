"""What a finished run writes: its final test and `result.json` (metrics, the run's settings
hash and cost, the launcher's request and what the trainer recorded), the run's done marker."""
import hashlib
import os.path as osp
import platform
import resource
import time

import torch

from dassl.utils import read_json, write_json

RESULT_FILE = "result.json"  # written when a run's final test finished: the "done" marker
REQUEST_FILE = "request.json"  # what a launcher asked this run to be; copied into result.json


class RunResultMixin:
    """The result methods of `SimpleTrainer` (its cfg, device, models and test)."""

    def final_test(self):
        """The run's last evaluation: test, then write `result.json` (the run's done marker).
        Training and selection are over, so the test split opens here."""
        self.open_test_split()
        self.test()
        record = dict(self.last_results)
        record.update(trainer=self.cfg.TRAINER.NAME, dataset=self.cfg.DATASET.NAME,
                      num_shots=self.cfg.DATASET.NUM_SHOTS, seed=self.cfg.SEED,
                      backbone=self.cfg.MODEL.BACKBONE.NAME, epochs=self.epochs_trained(),
                      finished=time.strftime("%Y-%m-%d %H:%M:%S"))
        record.update(self.run_details())
        write_json(record, osp.join(self.output_dir, RESULT_FILE))
        return record

    def count_trainable_params(self):
        """Parameters the run tunes (result.json `trainable_params`): those of the registered
        models that take gradients. A trainer that fits parameters another way overrides it."""
        return sum(p.numel() for model in self._models.values() for p in model.parameters() if p.requires_grad)

    def run_details(self):
        """What the run was and how it ran, kept beside its metrics: the launcher's request
        (method, config, variant, ...), the classes, the trainable parameters, the weights
        the backbone got, the feature pipeline, and what the trainer chose (`run_record`)."""
        backbone = self.cfg.MODEL.BACKBONE
        weights = backbone.get("PATH", "") or f"released weights of {backbone.NAME}"
        details = {
            "num_classes": getattr(self, "num_classes", None),
            "trainable_params": self.count_trainable_params(),
            "weights": weights if backbone.get("PRETRAINED", True) else "random",
            "pipeline": getattr(self, "pipeline", None),
            "protocol": self.protocol,
            "subset_hash": getattr(self, "subset_hash", None),
            "settings_hash": self.settings_hash(),
            "cost": self.run_cost(),
        }
        try:  # a damaged request file must not cost the finished run its result
            request = read_json(osp.join(self.output_dir, REQUEST_FILE))
        except (OSError, ValueError):
            request = None
        if isinstance(request, dict):
            details["request"] = request
            details.update({k: request[k] for k in ("method", "cfg", "variant") if k in request})
        details.update(getattr(self, "run_record", {}))
        return details

    def settings_hash(self):
        """sha256 of every config value that shapes what training computes (the method's preset
        after all overrides): two results with equal hashes ran the same settings."""
        settings = self.training_settings()
        if settings is None:
            return None
        text = "\n".join(f"{k}={settings[k]!r}" for k in sorted(settings) if k != "SEED")
        return hashlib.sha256(text.encode()).hexdigest()

    def run_cost(self):
        """Wall time since the trainer was built, peak memory of this process (host) and of
        the device, and the device's name: the cost columns of the tables (`--cost`)."""
        cuda = self.device.type == "cuda"
        return {
            "wall_s": round(time.time() - self.run_started, 2),
            "host_peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "device_peak_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if cuda else None,
            "device": torch.cuda.get_device_name(self.device) if cuda else (platform.processor() or "cpu"),
        }

    def epochs_trained(self):
        """Epochs behind the evaluated model: 0 for a trainer that does not train, the loaded
        checkpoint's for an evaluation (None if it loaded nothing), else OPTIM.MAX_EPOCH."""
        if not self.trains:
            return 0
        if self.run_record.get("eval_only"):
            return self.run_record.get("loaded_epoch")
        return self.max_epoch
