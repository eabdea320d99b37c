"""The learned cost model: telemetry features, estimators, cold-start heuristics, evaluation."""

from raysched.schedulers.predictor.cost_model import CostModel, Prediction, PredictionBatch

__all__ = ["CostModel", "Prediction", "PredictionBatch"]
