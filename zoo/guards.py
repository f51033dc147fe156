"""Lightning callbacks that stop a run which can no longer give a result.

``StopOnNonFiniteLoss``: a NaN or infinite training loss ends the run with a one-line error at the step where it
appears. The epoch does not finish, so the last checkpoint stays the previous epoch's (a resume point), and no
student weights or record are written: a diverged run never becomes a result.
"""

import torch
from lightning.pytorch.callbacks import Callback

from zoo.errors import ZooError


class StopOnNonFiniteLoss(Callback):
    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor) and not torch.isfinite(loss.detach()).all():
            raise ZooError(f"the training loss became {float(loss.detach().float().mean())} at epoch "
                           f"{trainer.current_epoch}, batch {batch_idx}: the run stopped, no record was written",
                           "lower optim.lr or check the inputs; the last finished epoch's checkpoint is kept")
