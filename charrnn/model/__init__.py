"""The network: ModelConfig, the recurrent model (LSTM, GRU, RNN) and its fast one-step kernels."""
