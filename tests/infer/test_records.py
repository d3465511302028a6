"""Records to requests, stop planning and decoding: no model needed beyond a tokenizer."""

from __future__ import annotations

import pytest
from ft_common.errors import InputError
from ft_infer.resume import resume_point, unique_ids
from ft_infer.types import to_request


def test_prompt_messages_and_stops():
    r = to_request({"id": "a", "prompt": "p", "stop": ["<END_A>"]}, 0)
    assert (r.id, r.prompt, r.stop, r.is_chat) == ("a", "p", ("<END_A>",), False)
    chat = to_request({"id": "c", "format": "chat", "prompt": "x",
                       "messages": [{"role": "user", "content": "hi"}]}, 1)
    assert chat.is_chat and chat.messages[0]["content"] == "hi"
    assert to_request({"prompt": "p"}, 3, default_stop=("\n",)).stop == ("\n",)
    assert to_request({"prompt": "p"}, 3).id == "#3"


@pytest.mark.parametrize("record, message", [
    ({"id": "x/1"}, "record x/1: no 'prompt' or 'messages'"),
    ({"id": "x/2", "prompt": 3}, "record x/2: key 'prompt' has type int"),
    ({"id": "x/3", "messages": [{"role": "user"}]}, "record x/3: key 'messages' must be"),
    ({"id": "x/4", "prompt": "p", "stop": [""]}, "record x/4: key 'stop' must be"),
])
def test_bad_records_name_their_id(record, message):
    with pytest.raises(InputError, match=message):
        to_request(record, 0)


def test_resume_point_cuts_a_torn_line(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text('{"id": "a", "completion": "x"}\n{"id": "b"}\n{"id": "c", "compl')
    assert resume_point(str(out)) == {"a"}  # b has no completion, c was cut short
    assert out.read_text() == '{"id": "a", "completion": "x"}\n{"id": "b"}\n'
    assert resume_point(str(tmp_path / "missing.jsonl")) == set()


def test_resume_point_keeps_a_finished_last_line_without_newline(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text('{"id": "a", "completion": "x"}\n{"id": "b", "completion": "y"}')
    assert resume_point(str(out)) == {"a", "b"}
    assert out.read_text() == '{"id": "a", "completion": "x"}\n{"id": "b", "completion": "y"}\n'


def test_resume_point_cuts_a_torn_multibyte_character(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_bytes('{"id": "a", "completion": "é"}\n{"id": "b", "completion": "é'.encode()[:-1])
    assert resume_point(str(out)) == {"a"}
    assert out.read_bytes().endswith(b'"\xc3\xa9"}\n')


def test_resume_point_refuses_a_bad_line_before_the_end(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text('{"id": "a", "completion": "x"}\nnot json\n{"id": "b", "completion": "y"}\n')
    with pytest.raises(InputError, match=r"out.jsonl:2: not valid JSON"):
        resume_point(str(out))


def test_duplicate_ids_name_both_lines():
    pairs = [(1, {"id": "a"}), (2, {"id": "b"}), (4, {"prompt": "no id"}), (5, {"id": "a"})]
    with pytest.raises(InputError, match=r"in.jsonl:5: duplicate id 'a' \(first on line 1\)"):
        list(unique_ids(pairs, "in.jsonl"))
    assert len(list(unique_ids(pairs[:3], "in.jsonl"))) == 3


def test_chat_messages_use_the_chat_template(varied_model):
    from ft_infer import GenerationOptions
    from ft_infer.engines.hf import HFEngine

    engine = HFEngine(str(varied_model), GenerationOptions(max_new_tokens=2), quiet=True)
    request = to_request({"id": "c", "messages": [{"role": "user", "content": "Halo is fun"}]}, 0)
    engine.load()
    with pytest.raises(InputError, match="no chat template"):
        engine.encode(request)
    engine.tokenizer.chat_template = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}{% endfor %}"
    assert engine.encode(request) == engine.tokenizer("[user] Halo is fun", add_special_tokens=False)["input_ids"]
    assert engine.generate([request])[0].completion_tokens == 2
