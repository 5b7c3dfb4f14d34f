"""The API clients expect: /v1/chat/completions (a conversation as a play), logprobs, and units that are the model's
tokens (a word model's `max_tokens: 16` writes 16 word tokens, and `usage` says 16)."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("starlette", reason="needs the serve extra: pip install 'charrnn[serve]'")
httpx = pytest.importorskip("httpx")

from charrnn.generation.sampling import prime_ids_for  # noqa: E402
from charrnn.serve.chat import ChatFormat, Message, render  # noqa: E402
from charrnn.serve.responses import TokenNames  # noqa: E402
from charrnn.training.checkpoint import load_model  # noqa: E402
from charrnn.util.errors import UsageError  # noqa: E402
from tests.serving import live_server  # noqa: E402

PLAY = ("ROMEO:\nBut soft, what light through yonder window breaks?\n\n"
        "JULIET:\nO Romeo, Romeo! wherefore art thou Romeo?\n\n") * 30
ROMEO = {"role": "user", "name": "ROMEO", "content": "But soft, what light through yonder window breaks?"}
JULIET = {"role": "assistant", "name": "JULIET", "content": ""}
ANSWER = "O Romeo, Romeo! wherefore art thou Romeo?"


def train(root, kind: str, steps: int):
    from charrnn import TrainConfig, train_on_text

    cfg = TrainConfig(steps=steps, batch_size=8, seq_len=48, lr=2e-2, eval_every=steps, sample_every=0, threads=1,
                      precision="fp32", device="cpu")
    out = root / kind
    train_on_text(PLAY, {"hidden": 48, "embed": 16, "layers": 1}, cfg, out, kind=kind,
                  meta={"corpus": "play.txt", "prompt": "ROMEO:"} if kind == "char" else None)
    return out


@pytest.fixture(scope="module")
def play(tmp_path_factory):
    """A character model that knows the two lines of PLAY by heart, served (with its loaded model)."""
    run = train(tmp_path_factory.mktemp("play"), "char", 200)
    with live_server(run / "best.pt") as (url, _, lines):
        yield url, load_model(run), lines


@pytest.fixture(scope="module")
def words(tmp_path_factory):
    run = train(tmp_path_factory.mktemp("words"), "word", 40)
    with live_server(run / "best.pt") as (url, _, lines):
        yield url, load_model(run), lines


def post(url: str, body: dict, path: str = "/v1/completions") -> dict:
    r = httpx.post(url + path, json=body, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def streamed(url: str, body: dict, path: str = "/v1/completions") -> list[dict]:
    with httpx.stream("POST", url + path, json={**body, "stream": True}, timeout=60) as r:
        data = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    return [json.loads(d) for d in data[:-1]]


# ---- the conversation as a play ---------------------------------------------------------------------

def test_messages_become_a_play_ending_with_the_next_speakers_name():
    play = ChatFormat.parse("play")
    said = [Message("SYSTEM", "Verona.", False), Message("ROMEO", "Peace!", False), Message("JULIET", "Hm.", True),
            Message("ROMEO", "Again?", False)]
    prompt, stops = render(play, said)
    assert prompt == "SYSTEM:\nVerona.\n\nROMEO:\nPeace!\n\nJULIET:\nHm.\n\nROMEO:\nAgain?\n\nJULIET:\n"
    assert stops == ("\n\n", "\nSYSTEM:", "\nROMEO:", "\nJULIET:")
    prompt, _ = render(play, said[:2] + [Message("JULIET", "O", True)])  # a last assistant message is continued
    assert prompt.endswith("ROMEO:\nPeace!\n\nJULIET:\nO")
    assert render(play, [Message("USER", "Hi", False)])[0] == "USER:\nHi\n\nASSISTANT:\n"
    assert render(ChatFormat.parse("lines"), said) == ("Verona.\nPeace!\nHm.\nAgain?\n", ("\n",))
    assert render(ChatFormat.parse("{name}: {content}\n"), said[1:2])[0] == "ROMEO: Peace!\nASSISTANT: "
    for bad in ("{name}:", "{content}{content}\n", "{name}{name}{content}\n", "{content}\n{name}", "hello"):
        with pytest.raises(UsageError, match="chat_format"):
            ChatFormat.parse(bad)


def test_the_openai_client_chats_plain_and_streamed(play):
    openai = pytest.importorskip("openai")
    url, _, _ = play
    client = openai.OpenAI(base_url=url + "/v1", api_key="not-needed")
    answer = client.chat.completions.create(model="parrot", messages=[ROMEO, JULIET], max_tokens=200, temperature=0)
    assert answer.object == "chat.completion" and answer.id.startswith("chatcmpl-")
    choice = answer.choices[0]
    assert (choice.message.role, choice.message.content, choice.finish_reason) == ("assistant", ANSWER, "stop")
    assert answer.usage.completion_tokens == len(ANSWER) + 2  # its speech, then the blank line that ended it
    stream = client.chat.completions.create(model="parrot", messages=[ROMEO, JULIET], max_tokens=200, temperature=0,
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ANSWER
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage.completion_tokens == answer.usage.completion_tokens


def test_a_chat_is_the_completion_of_its_play_with_the_same_sampling(play):
    url, _, _ = play
    settings = {"max_tokens": 120, "temperature": 1.3, "top_k": 8, "seed": 5, "n": 2}
    chat = post(url, {"messages": [ROMEO, JULIET], **settings}, "/v1/chat/completions")
    prompt = "ROMEO:\nBut soft, what light through yonder window breaks?\n\nJULIET:\n"
    text = post(url, {"prompt": prompt, "stop": ["\n\n", "\nROMEO:", "\nJULIET:"], **settings})
    assert [c["message"]["content"] for c in chat["choices"]] == [c["text"] for c in text["choices"]]
    assert chat["usage"] == text["usage"]
    r = httpx.post(url + "/v1/chat/completions", json={"messages": [ROMEO], "temperature": 101}, timeout=60)
    assert r.status_code == 400 and r.json()["error"]["param"] == "temperature"
    r = httpx.post(url + "/v1/chat/completions", json={"messages": [ROMEO]}, timeout=60)  # ASSISTANT: unknown letters
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages" and "'A' 'S' 'N'" in r.text


# ---- logprobs -----------------------------------------------------------------------------------------

def model_logprobs(loaded, prompt: str, text: str) -> torch.Tensor:
    """log p(each character of `text` | prompt, the text before it), the model's own distribution: (len(text), V)."""
    ids = prime_ids_for(loaded.vocab, prompt) + loaded.vocab.encode(text)
    with torch.no_grad():
        logits, _ = loaded.model(torch.tensor([ids]))  # (1, T, V)
    return torch.log_softmax(logits[0, -len(text) - 1 : -1].float(), dim=-1)


def test_logprobs_are_the_models_own_plain_streamed_and_through_the_openai_client(play):
    openai = pytest.importorskip("openai")
    url, loaded, _ = play
    client = openai.OpenAI(base_url=url + "/v1", api_key="not-needed")
    got = client.completions.create(model="parrot", prompt="ROMEO:", max_tokens=40, temperature=1.5, seed=3,
                                    logprobs=3)
    text, lp = got.choices[0].text, got.choices[0].logprobs
    expected = model_logprobs(loaded, "ROMEO:", text)  # not tempered: the same at any temperature
    assert "".join(lp.tokens) == text and len(lp.tokens) == 40 == got.usage.completion_tokens
    assert lp.token_logprobs == pytest.approx([expected[i, loaded.vocab.encode(c)[0]].item()
                                               for i, c in enumerate(text)], abs=1e-4)
    assert lp.text_offset == [len("ROMEO:") + i for i in range(40)]
    for i, top in enumerate(lp.top_logprobs):
        best = expected[i].topk(3)
        listed = {loaded.vocab.pieces[j]: v for j, v in zip(best.indices.tolist(), best.values.tolist())}
        assert set(top) == set(listed) | {lp.tokens[i]} and len(top) in (3, 4)  # and the chosen one
        assert [top[k] for k in listed] == pytest.approx(list(listed.values()), abs=1e-4)
    events = streamed(url, {"prompt": "ROMEO:", "max_tokens": 40, "temperature": 1.5, "seed": 3, "logprobs": 3})
    pieces = [e["choices"][0]["logprobs"] for e in events if e["choices"][0]["logprobs"]]
    assert len(pieces) >= 1 and sum((p["tokens"] for p in pieces), []) == lp.tokens
    assert sum((p["text_offset"] for p in pieces), []) == lp.text_offset


def test_logprobs_stop_where_the_text_does_and_chat_has_its_own_shape(play):
    url, loaded, _ = play
    r = post(url, {"prompt": "ROMEO:\n", "max_tokens": 60, "temperature": 0, "stop": "light", "logprobs": 0})
    choice = r["choices"][0]
    assert choice["text"] == "But soft, what " and choice["finish_reason"] == "stop"
    assert "".join(choice["logprobs"]["tokens"]) == choice["text"]  # not the stop string's tokens
    assert all(len(top) == 1 for top in choice["logprobs"]["top_logprobs"])  # logprobs 0: the chosen one only
    assert r["usage"]["completion_tokens"] == len("But soft, what light")  # written, stop string included
    chat = post(url, {"messages": [ROMEO, JULIET], "max_tokens": 60, "temperature": 0, "logprobs": True,
                      "top_logprobs": 2}, "/v1/chat/completions")
    content = chat["choices"][0]["logprobs"]["content"]
    assert "".join(t["token"] for t in content) == ANSWER
    assert content[0]["bytes"] == [ord("O")] and len(content[0]["top_logprobs"]) == 2
    assert content[0]["top_logprobs"][0]["logprob"] >= content[0]["top_logprobs"][1]["logprob"]


def test_a_byte_that_is_part_of_a_character_is_named_as_openai_names_it():
    from charrnn.text.bytevocab import ByteVocab
    from charrnn.text.vocab import Vocab

    names = TokenNames(ByteVocab())
    assert names.name(ord("A")) == ("A", [65]) and names.name(0xE6) == ("bytes:\\xe6", [0xE6])
    assert TokenNames(Vocab("a€")).name(1) == ("€", [0xE2, 0x82, 0xAC])


# ---- the model's own units, and its card ---------------------------------------------------------------

def test_a_word_model_writes_and_counts_word_tokens(words):
    url, loaded, lines = words
    r = post(url, {"prompt": "ROMEO:", "max_tokens": 16, "temperature": 1.0, "seed": 1, "logprobs": 0})
    tokens, text = r["choices"][0]["logprobs"]["tokens"], r["choices"][0]["text"]
    assert len(tokens) == 16 and "".join(tokens) == text and len(text) > 16  # words, not characters
    assert r["usage"] == {"prompt_tokens": len(loaded.vocab.encode("ROMEO:")), "completion_tokens": 16,
                          "total_tokens": len(loaded.vocab.encode("ROMEO:")) + 16}
    two = streamed(url, {"prompt": "ROMEO:", "max_tokens": 16, "n": 2, "stream_options": {"include_usage": True}})
    assert two[-1]["usage"]["completion_tokens"] == 32
    assert any(line.endswith(" 16 word tokens") for line in lines)


def test_the_card_names_the_unit_and_offers_the_models_own_prompt(play, words):
    card = httpx.get(play[0] + "/v1/models").json()["data"][0]["charrnn"]
    assert (card["unit"], card["tokens"], card["prompt"]) == ("characters", "char", "ROMEO:")
    assert card["vocab_size"] == len(play[1].vocab) and card["chat_format"] == "{name}:\n{content}\n\n"
    card = httpx.get(words[0] + "/v1/models").json()["data"][0]["charrnn"]
    assert (card["unit"], card["tokens"], card["vocab_size"]) == ("word tokens", "word", len(words[1].vocab))
    assert isinstance(card["prompt"], str) and not words[1].vocab.unknown(card["prompt"])
