#!/usr/bin/env python3
"""Fixtures for Tests/TillerTokenizersTests: what transformers / tokenizers / jinja2 produce, for the Swift
tokenizers, pre-tokenizer scanners and Jinja interpreter to match exactly.

Regenerate (needs transformers>=5, tokenizers, jinja2, gguf, and the two default models in the cache):
    TILLER_HOME=~/.cache/tiller python3 tools/reference/tokenizer_fixtures.py
It rewrites Tests/TillerTokenizersTests/Fixtures/ (everything but README.md). Deterministic: rerunning gives
the same files (the small tokenizer.json files are trained with fixed settings on a fixed corpus).

Written files:
  corpus.json            the texts every tokenizer is checked on
  gguf-<model>.json      ids/tokens/decodes of the corpus through AutoTokenizer.from_pretrained(gguf_file=...),
                         plus rendered chats + apply_chat_template ids where the model has a template
  styles/<style>/        small tokenizer.json (+ tokenizer_config.json) trained with `tokenizers` in the shape of
                         Llama 3, Qwen2, Gemma 2 and Llama 2 (Metaspace), and expected.json beside them
  splits.json            how the GPT-2 / Llama 3 / Qwen2 Split regexes cut every corpus text
  charclasses.json       code point ranges Oniguruma (the regex engine of `tokenizers`) puts in \\p{L}, \\p{N}, \\s
  chat-templates.json    the chat templates of SmolLM2, Gemma 2, Gemma 3, Llama 3.1 rendered for several chats
  jinja-cases.json       small templates exercising the Jinja subset, rendered by jinja2 set up as transformers does
"""
import json
import os
import shutil
import sys
import tempfile

import jinja2
from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import BPE
from tokenizers.trainers import BpeTrainer
from transformers import AutoTokenizer, PreTrainedTokenizerFast

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "Tests", "TillerTokenizersTests", "Fixtures")
MODELS = os.path.join(os.environ.get("TILLER_HOME", os.path.expanduser("~/.cache/tiller")), "models")

CORPUS = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    " leading space and trailing space ",
    "Multiple   spaces\tand\ttabs\n\nand blank lines\n\n\n   indented\n",
    "I'm sure they'll say it's fine, DON'T YOU'VE? We'd've gone.",
    "Numbers: 1 12 123 1234 12345 3.14159 -42 1e-9 0x1F 2024-07-26 1,000,000",
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "for (int i = 0; i < 10; ++i) { printf(\"%d\\n\", i); }  // C-style\r\n",
    "Emoji: 😀🎉👍🏽 👨‍👩‍👧‍👦 and flags 🇫🇷🇯🇵",
    "CJK: 中文字符测试，日本語のテキスト、한국어 텍스트。",
    "Accents: café naïve résumé Ünïcödé façade e\u0301 (combining) ﬁ ligature",
    "Special tokens in text: <|im_start|>user\nhi<|im_end|> <bos> <eos> <start_of_turn>model <|endoftext|>",
    "Whitespace: a\u00a0b\u3000c\u2003d \u200be\r\nf\x0bg\x0ch",
    "    ",
    "\n",
    "a",
    "!!!??? ... --- ___ *** ### @@@",
    "URL https://example.com/path?q=1&r=two#frag and email someone@example.org",
    "Math: ∑_{i=1}^{n} x_i² ≤ ∞, α+β=γ, √2 ≈ 1.41421",
    "Mixed123abc ABC123 abc_def camelCaseWord snake_case_word kebab-case-word",
    "Ελληνικά κείμενο, Русский текст, العربية نص, עברית, हिन्दी पाठ",
    "rare chars: 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ꙮ 𓀀 ⿰ \U0001FAE0",
    "trailing newline spaces  \n  \n",
    "tab\t\tdouble\t\t\ttriple",
    "'s 're 'quoted' \"double\" `tick` 'S 'RE",
]

GPT2_SPLIT = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")

# Chat templates as the models ship them (tokenizer_config.json of google/gemma-2-2b-it, google/gemma-3-*-it,
# meta-llama/Llama-3.1-8B-Instruct). They are test inputs: the Swift interpreter must render them as jinja2 does.
GEMMA2_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}"
    "{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}"
)
GEMMA3_TEMPLATE = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\n'}}
{%- endif -%}
"""
LLAMA31_TEMPLATE = """{{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- set date_string = "26 Jul 2024" %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- System message + builtin tools #}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}
{%- if builtin_tools is defined or tools is not none %}
    {{- "Environment: ipython\\n" }}
{%- endif %}
{%- if builtin_tools is defined %}
    {{- "Tools: " + builtin_tools | reject('equalto', 'code_interpreter') | join(", ") + "\\n\\n"}}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\\n" }}
{{- "Today Date: " + date_string + "\\n\\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\\n\\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\\n\\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}

{#- Custom tools are passed in a user message with some extra guidance #}
{%- if tools_in_user_message and not tools is none %}
    {#- Extract the first user message so we can plug it in here #}
    {%- if messages | length != 0 %}
        {%- set first_user_message = messages[0]['content']|trim %}
        {%- set messages = messages[1:] %}
    {%- else %}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}
{%- endif %}
    {{- '<|start_header_id|>user<|end_header_id|>\\n\\n' -}}
    {{- "Given the following functions, please respond with a JSON for a function call " }}
    {{- "with its proper arguments that best answers the given prompt.\\n\\n" }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\\n\\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\\n\\n" }}
    {%- endfor %}
    {{- first_user_message + "<|eot_id|>"}}
{%- endif %}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {%- if builtin_tools is defined and tool_call.name in builtin_tools %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}
            {{- "<|python_tag|>" + tool_call.name + ".call(" }}
            {%- for arg_name, arg_val in tool_call.arguments | items %}
                {{- arg_name + '="' + arg_val + '"' }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- endif %}
                {%- endfor %}
            {{- ")" }}
        {%- else  %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}
            {{- '{"name": "' + tool_call.name + '", ' }}
            {{- '"parameters": ' }}
            {{- tool_call.arguments | tojson }}
            {{- "}" }}
        {%- endif %}
        {%- if builtin_tools is defined %}
            {#- This means we're in ipython mode #}
            {{- "<|eom_id|>" }}
        {%- else %}
            {{- "<|eot_id|>" }}
        {%- endif %}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\\n\\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
"""
CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>'"
    " + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

CHATS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "You are a terse assistant."}, {"role": "user", "content": "What is 2+2?"}],
    [{"role": "user", "content": "  Tell me a joke.  "}, {"role": "assistant", "content": "Why did the chicken cross the road?\n"},
     {"role": "user", "content": "Why?"}],
    [{"role": "system", "content": "Answer in French. 🇫🇷"}, {"role": "user", "content": "Where is Paris?"},
     {"role": "assistant", "content": "Paris est en France."}, {"role": "user", "content": "Et Lyon ? 中文"}],
]


def dump(path, value):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        json.dump(value, f, ensure_ascii=False, indent=None, separators=(",", ":"))
        f.write("\n")


def encode_cases(tok, texts):
    cases = []
    for text in texts:
        ids = tok(text).input_ids
        cases.append({
            "text": text,
            "ids": ids,
            "ids_no_special": tok(text, add_special_tokens=False).input_ids,
            "tokens": tok.convert_ids_to_tokens(ids),
            "decoded": tok.decode(ids),
            "decoded_skip_special": tok.decode(ids, skip_special_tokens=True),
        })
    return cases


def chat_cases(tok, template, chats):
    out = []
    for messages in chats:
        for gen in (True, False):
            try:
                rendered = tok.apply_chat_template(messages, chat_template=template, tokenize=False,
                                                   add_generation_prompt=gen)
                ids = tok.apply_chat_template(messages, chat_template=template, tokenize=True,
                                              add_generation_prompt=gen, return_dict=False)
                if isinstance(ids, dict) or hasattr(ids, "input_ids"):
                    ids = ids["input_ids"]
                out.append({"messages": messages, "add_generation_prompt": gen, "rendered": rendered, "ids": list(ids)})
            except jinja2.exceptions.TemplateError as e:
                out.append({"messages": messages, "add_generation_prompt": gen, "error": str(e)})
    return out


def gguf_fixture(name, short):
    tok = AutoTokenizer.from_pretrained(MODELS, gguf_file=name)
    fixture = {
        "file": name,
        "bos_token": tok.bos_token, "eos_token": tok.eos_token,
        "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id,
        "vocab_size": len(tok),
        "has_chat_template": tok.chat_template is not None,
        "cases": encode_cases(tok, CORPUS),
        "chats": chat_cases(tok, tok.chat_template, CHATS) if tok.chat_template else [],
    }
    dump(os.path.join(OUT, f"gguf-{short}.json"), fixture)


# ------------------------------------------------------------------ small tokenizer.json files in four styles

TRAIN_TEXT = [line for line in (
    "The quick brown fox jumps over the lazy dog. " * 3 +
    "Tokenizers split text into pieces; byte pair encoding merges the most frequent pairs first. "
    "Numbers like 123, 4567 and 3.14 show up in code: for i in range(10): print(i * 2). "
    "It's what they've said we'd do, and I'm sure you'll agree. "
    "Café, naïve, résumé. 中文 日本語 한국어. Emoji 😀 appear rarely.\n"
    "def main():\n    return 0\n\n"
    "Interpretability research studies the residual stream, massive activations and steering vectors. "
    "Large language models are trained on trillions of tokens of English text and source code."
).split("\n")] * 20
SPECIALS_LLAMA3 = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
SPECIALS_QWEN2 = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
SPECIALS_SP = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]


def byte_level_style(split, specials, normalizer, ignore_merges, vocab_size):
    tok = Tokenizer(BPE(ignore_merges=ignore_merges))
    if normalizer is not None:
        tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(split), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    trainer = BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                         initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(TRAIN_TEXT, trainer)
    return tok


def sentencepiece_style(metaspace, vocab_size):
    """BPE over '▁'-marked text with <0xXX> byte fallback, as Gemma 2 (Replace normalizer, no pre-tokenizer) or
    Llama 2 (Metaspace pre-tokenizer) ship it."""
    trainer_tok = Tokenizer(BPE(unk_token="<unk>"))
    if metaspace:
        trainer_tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    else:
        trainer_tok.normalizer = normalizers.Replace(" ", "▁")
    trainer = BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS_SP, show_progress=False)
    trainer_tok.train_from_iterator(TRAIN_TEXT, trainer)
    trained = json.loads(trainer_tok.to_str())
    vocab = {}
    for s in SPECIALS_SP:
        vocab[s] = len(vocab)
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for token, _ in sorted(trained["model"]["vocab"].items(), key=lambda kv: kv[1]):
        vocab.setdefault(token, len(vocab))
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in trained["model"]["merges"]]
    tok = Tokenizer(BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    if metaspace:
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
        tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                         decoders.Strip(content=" ", left=1, right=0)])
    else:
        tok.normalizer = normalizers.Replace(" ", "▁")
        tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", pair="<bos> $A <bos> $B",
                                                       special_tokens=[("<bos>", vocab["<bos>"])])
    tok.add_special_tokens(SPECIALS_SP)
    return tok


def write_style(name, tok, config, template):
    folder = os.path.join(OUT, "styles", name)
    os.makedirs(folder, exist_ok=True)
    tok.save(os.path.join(folder, "tokenizer.json"), pretty=False)
    config = dict(config, chat_template=template) if template else config
    dump(os.path.join(folder, "tokenizer_config.json"), config)
    hf = AutoTokenizer.from_pretrained(folder)
    expected = {"cases": encode_cases(hf, CORPUS), "chats": chat_cases(hf, template, CHATS) if template else []}
    dump(os.path.join(OUT, "styles", f"{name}.expected.json"), expected)


def styles():
    shutil.rmtree(os.path.join(OUT, "styles"), ignore_errors=True)
    llama3 = byte_level_style(LLAMA3_SPLIT, SPECIALS_LLAMA3, None, True, 1200)
    llama3.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
                                      special_tokens=[("<|begin_of_text|>", llama3.token_to_id("<|begin_of_text|>"))]),
    ])
    write_style("llama3", llama3, {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|begin_of_text|>",
                                   "eos_token": "<|eot_id|>", "clean_up_tokenization_spaces": True},
                LLAMA31_TEMPLATE)
    qwen2 = byte_level_style(QWEN2_SPLIT, SPECIALS_QWEN2, normalizers.NFC(), False, 1000)
    qwen2.post_processor = processors.ByteLevel(trim_offsets=False)
    write_style("qwen2", qwen2, {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": None,
                                 "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
                                 "clean_up_tokenization_spaces": False}, CHATML_TEMPLATE)
    gemma2 = sentencepiece_style(metaspace=False, vocab_size=900)
    write_style("gemma2", gemma2, {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<bos>",
                                   "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>",
                                   "add_bos_token": True, "clean_up_tokenization_spaces": False}, GEMMA2_TEMPLATE)
    llama2 = sentencepiece_style(metaspace=True, vocab_size=900)
    write_style("llama2", llama2, {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<bos>",
                                   "eos_token": "<eos>", "unk_token": "<unk>", "clean_up_tokenization_spaces": False},
                None)


# ------------------------------------------------------------------ regex splits and character classes

def splits():
    out = {}
    for name, pattern in (("gpt2", GPT2_SPLIT), ("llama3", LLAMA3_SPLIT), ("qwen2", QWEN2_SPLIT)):
        split = pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False)
        out[name] = {"pattern": pattern, "splits": [[p for p, _ in split.pre_tokenize_str(t)] for t in CORPUS]}
    dump(os.path.join(OUT, "splits.json"), out)


def char_classes():
    """Ranges of code points each class matches in Oniguruma, found by letting a Split remove them."""
    scalars = [c for c in range(1, 0x110000) if not 0xD800 <= c <= 0xDFFF]
    text = "".join(map(chr, scalars))
    out = {}
    for name, cls in (("L", r"\p{L}"), ("N", r"\p{N}"), ("s", r"\s")):
        kept = pre_tokenizers.Split(Regex(cls), behavior="removed").pre_tokenize_str(text)
        outside = bytearray(len(text))
        for _, (start, end) in kept:
            outside[start:end] = b"\x01" * (end - start)
        ranges, start = [], None
        for i, c in enumerate(scalars):
            inside = not outside[i]
            if inside and start is None:
                start = c
            if start is not None and (not inside or i + 1 == len(scalars) or scalars[i + 1] != c + 1):
                end = c if inside else scalars[i - 1]
                ranges.append([start, end])
                start = None
        out[name] = ranges
    dump(os.path.join(OUT, "charclasses.json"), out)


# ------------------------------------------------------------------ chat templates and Jinja cases

def jinja_env():
    """The environment transformers compiles chat templates in (utils/chat_template_utils.py)."""
    from transformers.utils.chat_template_utils import _compile_jinja_template
    return _compile_jinja_template


def chat_templates():
    tok = AutoTokenizer.from_pretrained(os.path.join(OUT, "styles", "llama3"))
    templates = {}
    for name, template, bos, eos in (("gemma2", GEMMA2_TEMPLATE, "<bos>", "<eos>"),
                                     ("gemma3", GEMMA3_TEMPLATE, "<bos>", "<eos>"),
                                     ("llama3.1", LLAMA31_TEMPLATE, "<|begin_of_text|>", "<|eot_id|>"),
                                     ("chatml", CHATML_TEMPLATE, "<|im_start|>", "<|im_end|>")):
        compiled = jinja_env()(template)
        renders = []
        for messages in CHATS + [[{"role": "assistant", "content": "starts with assistant"}]]:
            for gen in (True, False):
                context = dict(messages=messages, add_generation_prompt=gen, bos_token=bos, eos_token=eos,
                               tools=None, documents=None)
                try:
                    renders.append({"messages": messages, "add_generation_prompt": gen,
                                    "rendered": compiled.render(**context)})
                except jinja2.exceptions.TemplateError as e:
                    renders.append({"messages": messages, "add_generation_prompt": gen, "error": str(e)})
        templates[name] = {"template": template, "bos_token": bos, "eos_token": eos, "renders": renders}
    # Llama 3.1 with a tool list: tojson(indent=4), tool calls and tool results.
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                                "parameters": {"type": "object", "properties": {
                                                    "city": {"type": "string", "description": "City name"}},
                                                               "required": ["city"]}}}]
    messages = [{"role": "system", "content": "Use tools."}, {"role": "user", "content": "Weather in Oslo?"},
                {"role": "assistant", "tool_calls": [{"type": "function", "function": {
                    "name": "get_weather", "arguments": {"city": "Oslo"}}}]},
                {"role": "tool", "content": {"temp_c": -3, "sky": "snow ❄"}}]
    compiled = jinja_env()(LLAMA31_TEMPLATE)
    templates["llama3.1"]["tool_render"] = {
        "messages": messages, "tools": tools, "add_generation_prompt": True,
        "rendered": compiled.render(messages=messages, tools=tools, add_generation_prompt=True,
                                    bos_token="<|begin_of_text|>", eos_token="<|eot_id|>", documents=None)}
    dump(os.path.join(OUT, "chat-templates.json"), templates)


JINJA_CASES = [
    ("text and output", "Hello {{ name }}!", {"name": "world"}),
    ("arithmetic", "{{ 1 + 2 * 3 }} {{ 7 // 2 }} {{ 7 % 3 }} {{ 2 ** 10 }} {{ 7 / 2 }} {{ -3 + 1 }} {{ 1.5 * 2 }}", {}),
    ("comparisons", "{{ 1 < 2 }} {{ 2 <= 1 }} {{ 'a' == 'a' }} {{ 'a' != 'b' }} {{ 3 > 2 and 1 > 2 }} {{ not false or false }}", {}),
    ("concat tilde", "{{ 'a' ~ 1 ~ none }}|{{ 'x' + 'y' }}", {}),
    ("if elif else", "{% for x in xs %}{% if x > 2 %}big{% elif x == 2 %}two{% else %}small{% endif %},{% endfor %}", {"xs": [1, 2, 3]}),
    ("loop vars", "{% for x in xs %}{{ loop.index }}/{{ loop.index0 }}/{{ loop.revindex }}/{{ loop.revindex0 }}/{{ loop.first }}/{{ loop.last }}/{{ loop.length }} {% endfor %}", {"xs": ["a", "b", "c"]}),
    ("loop prev next cycle", "{% for x in xs %}{{ loop.previtem | default('-') }}{{ x }}{{ loop.nextitem | default('-') }}{{ loop.cycle('o', 'e') }} {% endfor %}", {"xs": [1, 2, 3]}),
    ("for else", "{% for x in [] %}{{ x }}{% else %}empty{% endfor %}", {}),
    ("for filter", "{% for x in xs if x % 2 == 0 %}{{ x }}{% endfor %}", {"xs": [1, 2, 3, 4, 5, 6]}),
    ("break continue", "{% for x in xs %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 5 %}{% break %}{% endif %}{{ x }}{% endfor %}", {"xs": [1, 2, 3, 4, 5, 6]}),
    ("dict iteration", "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{% for k in d %}{{ k }}{% endfor %}", {"d": {"b": 1, "a": 2}}),
    ("tuple unpack", "{% for a, b in pairs %}{{ a }}{{ b }} {% endfor %}", {"pairs": [[1, 2], [3, 4]]}),
    ("set and scoping", "{% set x = 1 %}{% for i in [1,2] %}{% set x = x + i %}{{ x }}{% endfor %}{{ x }}", {}),
    ("namespace", "{% set ns = namespace(total=0, seen=false) %}{% for i in [1,2,3] %}{% set ns.total = ns.total + i %}{% set ns.seen = true %}{% endfor %}{{ ns.total }} {{ ns.seen }}", {}),
    ("slicing", "{{ xs[1:] }} {{ xs[:2] }} {{ xs[-1] }} {{ xs[::-1] }} {{ xs[1:3] }} {{ s[1:4] }} {{ s[::-1] }} {{ xs[-2:] }}", {"xs": [1, 2, 3, 4], "s": "abcdef"}),
    ("filters string", "{{ '  hi  ' | trim }}|{{ 'Hello' | upper }}|{{ 'Hello' | lower }}|{{ 'hello world' | title }}|{{ 'hello' | capitalize }}|{{ 'a-b-c' | replace('-', '+') }}|{{ 'abc' | length }}", {}),
    ("filters list", "{{ xs | join(', ') }}|{{ xs | first }}|{{ xs | last }}|{{ xs | length }}|{{ xs | reverse | list }}|{{ xs | sort | list }}|{{ xs | sum }}|{{ xs | min }}|{{ xs | max }}|{{ xs | unique | list }}", {"xs": [3, 1, 2, 3]}),
    ("tojson", "{{ obj | tojson }}|{{ obj | tojson(indent=2) }}|{{ 'é\"<' | tojson }}|{{ [1, none, true, 1.5] | tojson }}", {"obj": {"b": [1, 2], "a": {"c": "d"}, "e": None}}),
    ("default", "{{ missing | default('dflt') }}|{{ '' | default('empty', true) }}|{{ none | default('n') }}|{{ x | default('no') }}", {"x": 0}),
    ("tests", "{{ x is defined }} {{ y is defined }} {{ y is undefined }} {{ n is none }} {{ s is string }} {{ xs is iterable }} {{ d is mapping }} {{ 3 is number }} {{ 4 is even }} {{ 3 is odd }} {{ xs is sequence }} {{ true is boolean }} {{ 3 is integer }} {{ 1.5 is float }}", {"x": 1, "n": None, "s": "s", "xs": [1], "d": {"a": 1}}),
    ("in operator", "{{ 'a' in 'cat' }} {{ 2 in [1, 2] }} {{ 'k' in d }} {{ 'z' not in d }}", {"d": {"k": 1}}),
    ("string methods", "{{ s.strip() }}|{{ s.lstrip() }}|{{ s.rstrip() }}|{{ s.split(',') }}|{{ 'a b  c'.split() }}|{{ s.startswith('  a') }}|{{ s.endswith('c  ') }}|{{ s.upper() }}|{{ s.replace(',', ';') }}|{{ 'x'.join(['1','2']) }}|{{ 'abc'.find('c') }}|{{ 'Hi'.lower() }}|{{ 'hi'.title() }}|{{ '  x\\n'.strip('\\n ') }}", {"s": "  a,b,c  "}),
    ("dict methods", "{{ d.get('a') }} {{ d.get('z', 'none') }} {{ d.keys() | list }} {{ d.values() | list }} {{ d['a'] }} {{ d.a }}", {"d": {"a": 1, "b": 2}}),
    ("inline if", "{{ 'yes' if flag else 'no' }} {{ 'yes' if not flag else 'no' }} {{ 'x' if false }}|", {"flag": True}),
    ("whitespace control", "a  {%- if true -%}  b  {%- endif -%}  c\n  {{- 'd' -}}  \ne", {}),
    ("trim and lstrip blocks", "<ul>\n    {% for x in xs %}\n    <li>{{ x }}</li>\n    {% endfor %}\n</ul>\n", {"xs": [1, 2]}),
    ("comments", "a{# hidden #}b {#- trimmed -#} c", {}),
    ("raw", "{% raw %}{{ not rendered }}{% endraw %}", {}),
    ("macro", "{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('A') }} {{ greet('B', punct='?') }}", {}),
    ("filter block and set block", "{% set body %}  inner {{ 1 + 1 }}  {% endset %}[{{ body | trim }}]", {}),
    ("selectattr map", "{{ users | selectattr('active') | map(attribute='name') | join(',') }}|{{ users | rejectattr('active') | map(attribute='name') | list }}|{{ users | selectattr('role', 'equalto', 'admin') | list | length }}", {"users": [{"name": "a", "active": True, "role": "admin"}, {"name": "b", "active": False, "role": "user"}]}),
    ("reject select", "{{ xs | reject('equalto', 2) | list }} {{ xs | select('odd') | list }}", {"xs": [1, 2, 3]}),
    ("items filter", "{% for k, v in d | items %}{{ k }}:{{ v }} {% endfor %}{{ d | dictsort }}", {"d": {"y": 1, "x": 2}}),
    ("integer and float filters", "{{ '42' | int + 1 }} {{ 3.7 | int }} {{ 2 | float }} {{ 3.14159 | round(2) }} {{ -5 | abs }} {{ 42 | string + '!' }}", {}),
    ("list literals and dict literals", "{{ [1, 'a', [2]] }} {{ {'k': 'v', 'n': 1} }} {{ (1, 2) }} {{ {'k': 'v'}['k'] }}", {}),
    ("printing values", "{{ none }}|{{ true }}|{{ false }}|{{ 1.0 }}|{{ 1e3 }}|{{ [none, true] }}|{{ 'it''s' if false else \"it's\" }}|{{ {'a': none} }}", {}),
    ("string escapes", "{{ 'tab\\there' }}|{{ \"quote\\\"s\" }}|{{ 'new\\nline' }}|{{ 'uni\\u00e9' }}", {}),
    ("raise_exception", "{% if x %}{{ raise_exception('bad input: ' + x) }}{% endif %}ok", {"x": "boom"}),
    ("messages loop", "{% for m in messages %}{{ m.role }}: {{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}", {"messages": [{"role": "user", "content": "hi"}], "add_generation_prompt": True}),
    ("nested loop", "{% for row in rows %}{% for c in row %}{{ loop.index }}{{ c }}{% endfor %};{{ loop.index }}|{% endfor %}", {"rows": [["a", "b"], ["c"]]}),
    ("string multiplication and format", "{{ '-' * 3 }} {{ '%s=%d' | format('a', 3) }} {{ 'ab' ~ 'cd' | upper }}", {}),
    ("length of dict and none checks", "{{ d | length }} {{ none is none }} {{ d.missing is defined }} {{ d.missing is none }}", {"d": {"a": 1}}),
    ("is in chained", "{% if m.role in ['user', 'system'] and m.content is string %}ok{% endif %}", {"m": {"role": "user", "content": "x"}}),
    ("undefined attribute prints empty", "[{{ d.nope }}][{{ missing }}]", {"d": {}}),
    ("filter chain with args", "{{ xs | map('upper') | join('-') }} {{ xs | map('length') | sum }} {{ 'a,b' .split(',') | last }}", {"xs": ["ab", "cde"]}),
    ("batch and indent", "{{ 'a\\nb' | indent(2) }}|{{ 'a\\nb' | indent(2, true) }}|{{ xs | batch(2) | list }}", {"xs": [1, 2, 3]}),
    ("callable set with filter", "{% set n = xs | length %}{{ n }}{% set ys = xs[1:] %}{{ ys | length }}", {"xs": [1, 2, 3]}),
    ("boolean ops short circuit", "{{ none and none.x }}|{{ 1 or undefined_thing }}|{{ 0 or 'fallback' }}|{{ [] or 'empty' }}", {}),
    ("equality across types", "{{ 1 == 1.0 }} {{ '1' == 1 }} {{ none == none }} {{ [1,2] == [1,2] }} {{ true == 1 }}", {}),
]


def jinja_cases():
    cases = []
    for name, template, context in JINJA_CASES:
        compiled = jinja_env()(template)
        try:
            cases.append({"name": name, "template": template, "context": context, "output": compiled.render(**context)})
        except jinja2.exceptions.TemplateError as e:
            cases.append({"name": name, "template": template, "context": context, "error": str(e)})
    dump(os.path.join(OUT, "jinja-cases.json"), cases)


def main():
    for name in os.listdir(OUT):
        if name != "README.md":
            path = os.path.join(OUT, name)
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    dump(os.path.join(OUT, "corpus.json"), CORPUS)
    gguf_fixture("SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2")
    gguf_fixture("gemma-3-270m-q4_k_m.gguf", "gemma3")
    styles()
    splits()
    char_classes()
    chat_templates()
    jinja_cases()


if __name__ == "__main__":
    main()
