"""Pure decision code: types, policies, predictor, simulator. Never imports ray."""
