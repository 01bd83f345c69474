import importlib.util
import re

import pytest

from moa_graph import MoAConfigError, local_server


def test_packaged_model_resolves_to_its_gguf_file() -> None:
    path = local_server.model_path("smollm2")
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.stat().st_size > 50_000_000


def test_unknown_local_model_names_the_choices() -> None:
    choices = re.escape("'local:smollm2' or 'local:/path/to/x.gguf'")
    with pytest.raises(MoAConfigError, match=choices):
        local_server.model_path("llama-70b")


def test_missing_extra_says_which_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: object) -> object:
        return None if name == "llama_cpp" else real(name, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(MoAConfigError, match=r"pip install 'moa-graph\[local\]'"):
        local_server.local_base_url("another-model")


def test_external_server_url_is_used_as_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOA_LOCAL_BASE_URL", "http://127.0.0.1:8080/v1/")
    assert local_server.local_base_url("smollm2") == "http://127.0.0.1:8080/v1"
