"""The locator's sigma curriculum: wide Gaussians first, then narrower ones.

A wide target is easy to hit from anywhere in the image; a narrow one pins the centroid
down. The sigma shrinks by ``shrink_factor`` when the validation loss has fallen below
``loss_threshold`` times the loss measured at the start of the current sigma, or has not
improved for ``patience`` epochs, and never goes below ``sigma_min``. With
``trivial_loss`` (the loss of predicting nothing, 1 for the relative MSE) the start loss is
capped at it, so unlearning a random initialisation does not count as progress.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from segforge.planning.plans import LocatorSettings

__all__ = ["SigmaCurriculum"]


@dataclass
class SigmaCurriculum:
    sigma_start: float
    sigma_min: float
    shrink_factor: float
    loss_threshold: float
    patience: int
    trivial_loss: float | None = None  # loss of the "found nothing" answer; caps the start loss
    sigma: float = -1.0
    start_loss: float | None = None  # first validation loss seen at the current sigma
    best_loss: float | None = None  # best validation loss at the current sigma
    epochs_since_best: int = 0
    steps: list[dict] = field(default_factory=list)  # [{"epoch": e, "sigma": s, "why": ...}]

    def __post_init__(self):
        if not 0 < self.shrink_factor < 1:
            raise ValueError(f"sigma shrink factor must be in (0, 1), got {self.shrink_factor}")
        if self.sigma_min <= 0 or self.sigma_start < self.sigma_min:
            raise ValueError(f"need 0 < sigma_min <= sigma_start, got {self.sigma_min} and {self.sigma_start}")
        if self.sigma < 0:
            self.sigma = float(self.sigma_start)
        if not self.steps:
            self.steps = [{"epoch": 0, "sigma": self.sigma, "why": "start"}]

    @classmethod
    def from_settings(cls, settings: LocatorSettings, trivial_loss: float | None = None) -> "SigmaCurriculum":
        return cls(
            trivial_loss=trivial_loss,
            sigma_start=settings.sigma_start,
            sigma_min=settings.sigma_min,
            shrink_factor=settings.sigma_shrink_factor,
            loss_threshold=settings.shrink_loss_threshold,
            patience=settings.shrink_patience,
        )

    @property
    def at_minimum(self) -> bool:
        return self.sigma <= self.sigma_min + 1e-9

    def update(self, epoch: int, val_loss: float) -> bool:
        """Record the validation loss of ``epoch`` (trained at the current sigma).

        Returns True when the sigma shrank; the next epoch then trains with ``self.sigma``.
        """
        val_loss = float(val_loss)
        if self.start_loss is None:
            # a fresh network's loss can exceed the all-zero answer's; falling to that is no progress
            self.start_loss = val_loss if self.trivial_loss is None else min(val_loss, self.trivial_loss)
        if self.best_loss is None or val_loss < self.best_loss:
            self.best_loss = val_loss
            self.epochs_since_best = 0
        else:
            self.epochs_since_best += 1
        if self.at_minimum:
            return False
        why = None
        if val_loss < self.loss_threshold * self.start_loss:
            why = f"val loss {val_loss:.4g} < {self.loss_threshold} x {self.start_loss:.4g} at this sigma's start"
        elif self.epochs_since_best >= self.patience:
            why = f"val loss has not improved for {self.epochs_since_best} epochs"
        if why is None:
            return False
        self.sigma = max(self.sigma * self.shrink_factor, self.sigma_min)
        self.start_loss = None
        self.best_loss = None
        self.epochs_since_best = 0
        self.steps.append({"epoch": int(epoch) + 1, "sigma": self.sigma, "why": why})
        return True

    def state_dict(self) -> dict:
        """Plain numbers, strings and lists: fits a ``weights_only`` checkpoint."""
        return {
            "sigma": float(self.sigma),
            "start_loss": self.start_loss,
            "best_loss": self.best_loss,
            "epochs_since_best": int(self.epochs_since_best),
            "steps": [dict(s) for s in self.steps],
        }

    def load_state_dict(self, state: dict) -> None:
        self.sigma = float(state["sigma"])
        self.start_loss = None if state["start_loss"] is None else float(state["start_loss"])
        self.best_loss = None if state["best_loss"] is None else float(state["best_loss"])
        self.epochs_since_best = int(state["epochs_since_best"])
        self.steps = [dict(s) for s in state["steps"]]
