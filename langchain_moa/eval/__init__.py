"""The paper's experiments: AlpacaEval 2.0, MT-Bench, FLASK and GSM8K, for any chat model."""
