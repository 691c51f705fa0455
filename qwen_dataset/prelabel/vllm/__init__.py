"""Qwen3-VL pre-annotation through vLLM: a served model over HTTP (:mod:`.backend`) or ``vllm.LLM`` in
this process (:mod:`.inprocess`), sharing settings, request building, jobs and answer parsing."""
