"""What the tests share: a real server process (`serverproc`), a stand-in
Anthropic API (`fake_anthropic`), tiny ONNX scorers (`model_kit`) and fakes."""
