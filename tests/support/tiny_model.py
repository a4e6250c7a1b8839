"""A tiny random-weight chat model, built on disk with no download, for tests and benchmarks of the local backend.

`build_tiny_model(path)` (or `python -m tests.support.tiny_model DIR`) writes a Llama-shaped causal LM and a word-level
tokenizer with a chat template, in the layout `from_pretrained` reads, so the app can run with
`LOCAL_MODEL=<path>` and `HF_HUB_OFFLINE=1`.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

__all__ = ["CHAT_TEMPLATE", "SPECIAL_TOKENS", "THREAD_NAMES", "build_tiny_model", "live_threads", "wait_for_threads"]

# The threads the local backend runs a reply on: none may outlive the reply.
THREAD_NAMES = {"local-generate", "local-stream"}

SPECIAL_TOKENS = ("<unk>", "<pad>", "<s>", "</s>", "<|im_start|>", "<|im_end|>")
# ChatML, like SmolLM2's own template, without the default system prompt.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Words only, no punctuation: the word-level decoder joins tokens with spaces, so every decoded prefix of a
# reply is a prefix of the whole reply, and streamed pieces join to exactly `tokenizer.decode(all tokens)`.
_TEXT = """
system user assistant you are a helpful concise assistant
the quick brown fox jumps over the lazy dog while the cat sleeps in the warm sun
hello world this is a small model that writes words one after another until it is told to stop
tell me a story about a robot who learns to paint with bright colors on a rainy day
numbers one two three four five six seven eight nine ten eleven twelve
why is the sky blue because light scatters in the air and blue light scatters the most
please write a short poem about the sea and the wind and the stars at night
what time is it now I think it is late and we should go home soon
"""


def _vocab() -> dict[str, int]:
    words = list(SPECIAL_TOKENS)
    for word in _TEXT.split():
        if word not in words:
            words.append(word)
    return {word: i for i, word in enumerate(words)}


def _tokenizer(vocab: dict[str, int]) -> PreTrainedTokenizerFast:
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    # No decoder of its own would also join with spaces; naming it keeps that explicit.
    backend.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="<|im_end|>",
        additional_special_tokens=["</s>", "<|im_start|>"],
        clean_up_tokenization_spaces=False,
        model_max_length=1_000_000,  # large on purpose: the backend must read the context from the model config
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_tiny_model(
    path: Path,
    *,
    hidden_size: int = 32,
    num_layers: int = 2,
    context: int = 2048,
    seed: int = 0,
) -> Path:
    """Write a random-weight Llama model and its tokenizer to `path` (created if needed); returns `path`.

    Greedy decoding never picks a special token: their rows of the output layer are zero, so their logits are
    exactly 0 while the largest of the other random logits is positive. A greedy reply therefore runs to
    `max_new_tokens` and decodes to non-empty text. Same arguments, same weights: the seed is fixed.

    Args:
        hidden_size: width of the model; 32 builds in a blink, 256 makes generation time dominate a benchmark.
        num_layers: number of decoder layers.
        context: the context window (`max_position_embeddings`) that `fit()` trims conversations to; the
            default leaves room for the app's default max_tokens (512) and a conversation.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    vocab = _vocab()
    tokenizer = _tokenizer(vocab)
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=context,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    special_ids = tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS))
    with torch.no_grad():
        model.lm_head.weight[special_ids] = 0.0
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    (path / "README.md").write_text(
        "Random weights, built by tests/tiny_model.py for tests and benchmarks. Not a real model.\n"
        + json.dumps({"hidden_size": hidden_size, "num_layers": num_layers, "context": context, "seed": seed})
        + "\n"
    )
    return path


def live_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name in THREAD_NAMES and t.is_alive()]


def wait_for_threads(deadline: float) -> None:
    """Until the local backend's threads have ended, or `deadline` (time.monotonic())."""
    while live_threads() and time.monotonic() < deadline:
        time.sleep(0.01)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Write a tiny random-weight chat model for LOCAL_MODEL.")
    parser.add_argument("path", type=Path, help="directory to write (created if needed)")
    parser.add_argument("--hidden", type=int, default=32, help="hidden size (default 32)")
    parser.add_argument("--layers", type=int, default=2, help="decoder layers (default 2)")
    parser.add_argument("--context", type=int, default=2048, help="context window in tokens (default 2048)")
    args = parser.parse_args()
    print(build_tiny_model(args.path, hidden_size=args.hidden, num_layers=args.layers, context=args.context))
