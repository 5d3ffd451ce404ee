"""Built-in chat templates, written in the Hugging Face Jinja dialect so they render like a model's own.

Every preset renders tools Hermes-style (a ``<tools>`` block of JSON schemas and the instruction to answer
with ``<tool_call>`` JSON) and tool results as ``<tool_response>`` blocks, so one tool-call parser serves
all of them. ``STOP_STRINGS`` lists each preset's end-of-turn markers.
"""

from __future__ import annotations

# Shared macros, prepended to each preset's body. Whitespace is explicit ('\n' in strings, ``{{-``)
# so the output does not depend on how the source is indented.
_MACROS = r"""
{%- macro tool_block(tools) -%}
{{- '# Tools\n\nYou may call one or more functions to assist with the user query.\n\n' -}}
{{- 'You are provided with function signatures within <tools></tools> XML tags:\n<tools>' -}}
{%- for tool in tools -%}
{{- '\n' + (tool | tojson) -}}
{%- endfor -%}
{{- '\n</tools>\n\nFor each function call, return a json object with function name and arguments within ' -}}
{{- '<tool_call></tool_call> XML tags:\n<tool_call>\n' -}}
{{- '{"name": <function-name>, "arguments": <args-json-object>}' -}}
{{- '\n</tool_call>' -}}
{%- endmacro -%}
{%- macro tool_calls_text(message, lead) -%}
{%- for call in message.tool_calls -%}
{%- set f = call.function if call.function is defined else call -%}
{{- ('\n' if lead or not loop.first else '') + '<tool_call>\n{"name": "' + f.name + '", "arguments": ' -}}
{{- f.arguments if f.arguments is string else (f.arguments | tojson) -}}
{{- '}\n</tool_call>' -}}
{%- endfor -%}
{%- endmacro -%}
{%- macro tool_response(message) -%}
{{- '\n<tool_response>\n' + message.content + '\n</tool_response>' -}}
{%- endmacro -%}
"""

_CHATML = r"""
{%- if messages and messages[0].role == 'system' -%}
  {%- set system = messages[0].content -%}
  {%- set loop_messages = messages[1:] -%}
{%- else -%}
  {%- set system = '' -%}
  {%- set loop_messages = messages -%}
{%- endif -%}
{%- if system or tools -%}
  {{- '<|im_start|>system\n' + system -}}
  {%- if tools -%}{{- ('\n\n' if system else '') + tool_block(tools) -}}{%- endif -%}
  {{- '<|im_end|>\n' -}}
{%- endif -%}
{%- for message in loop_messages -%}
  {%- if message.role == 'tool' -%}
    {%- if loop.first or loop_messages[loop.index0 - 1].role != 'tool' -%}
      {{- '<|im_start|>user' -}}
    {%- endif -%}
    {{- tool_response(message) -}}
    {%- if loop.last or loop_messages[loop.index0 + 1].role != 'tool' -%}{{- '<|im_end|>\n' -}}{%- endif -%}
  {%- elif message.role == 'assistant' -%}
    {%- set content = message.content -%}
    {%- if strip_thinking and '</think>' in content -%}
      {%- set content = content.split('</think>')[-1].lstrip('\n') -%}
    {%- endif -%}
    {{- '<|im_start|>assistant' -}}
    {%- if content -%}{{- '\n' + content -}}{%- endif -%}
    {%- if message.tool_calls -%}{{- tool_calls_text(message, true) -}}{%- endif -%}
    {{- '<|im_end|>\n' -}}
  {%- else -%}
    {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' -}}
  {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
  {{- '<|im_start|>assistant\n' -}}
  {%- if strip_thinking and not enable_thinking -%}{{- '<think>\n\n</think>\n\n' -}}{%- endif -%}
{%- endif -%}
"""

# Qwen3: ChatML, reasoning removed from earlier answers, an empty think block when thinking is off.
_QWEN3 = "{%- set strip_thinking = true -%}" + _CHATML
_CHATML_PLAIN = "{%- set strip_thinking = false -%}" + _CHATML

_LLAMA3 = r"""
{{- bos_token -}}
{%- if messages and messages[0].role == 'system' -%}
  {%- set system = messages[0].content | trim -%}
  {%- set loop_messages = messages[1:] -%}
{%- else -%}
  {%- set system = '' -%}
  {%- set loop_messages = messages -%}
{%- endif -%}
{%- if system or tools -%}
  {{- '<|start_header_id|>system<|end_header_id|>\n\n' + system -}}
  {%- if tools -%}{{- ('\n\n' if system else '') + tool_block(tools) -}}{%- endif -%}
  {{- '<|eot_id|>' -}}
{%- endif -%}
{%- for message in loop_messages -%}
  {%- if message.role == 'tool' -%}
    {{- '<|start_header_id|>ipython<|end_header_id|>\n\n' + (message.content | trim) + '<|eot_id|>' -}}
  {%- elif message.role == 'assistant' -%}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' + (message.content | trim) -}}
    {%- if message.tool_calls -%}{{- tool_calls_text(message, message.content | trim) -}}{%- endif -%}
    {{- '<|eot_id|>' -}}
  {%- else -%}
    {{- '<|start_header_id|>' + message.role + '<|end_header_id|>\n\n' + (message.content | trim) -}}
    {{- '<|eot_id|>' -}}
  {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}{%- endif -%}
"""

# Gemma has no system role: the system prompt (and tools) open the first user turn, as Google's does.
_GEMMA = r"""
{{- bos_token -}}
{%- set ns = namespace(prefix='') -%}
{%- if messages and messages[0].role == 'system' -%}
  {%- set ns.prefix = messages[0].content + '\n\n' -%}
  {%- set loop_messages = messages[1:] -%}
{%- else -%}
  {%- set loop_messages = messages -%}
{%- endif -%}
{%- if tools -%}{%- set ns.prefix = ns.prefix + tool_block(tools) + '\n\n' -%}{%- endif -%}
{%- for message in loop_messages -%}
  {%- if message.role == 'tool' -%}
    {%- if loop.first or loop_messages[loop.index0 - 1].role != 'tool' -%}
      {{- '<start_of_turn>user' -}}
    {%- endif -%}
    {{- tool_response(message) -}}
    {%- if loop.last or loop_messages[loop.index0 + 1].role != 'tool' -%}
      {{- '<end_of_turn>\n' -}}
    {%- endif -%}
  {%- else -%}
    {%- set role = 'model' if message.role == 'assistant' else message.role -%}
    {{- '<start_of_turn>' + role + '\n' -}}
    {%- if role == 'user' and ns.prefix -%}{{- ns.prefix -}}{%- set ns.prefix = '' -%}{%- endif -%}
    {{- message.content | trim -}}
    {%- if message.tool_calls -%}{{- tool_calls_text(message, message.content | trim) -}}{%- endif -%}
    {{- '<end_of_turn>\n' -}}
  {%- endif -%}
{%- endfor -%}
{%- if ns.prefix -%}{{- '<start_of_turn>user\n' + (ns.prefix | trim) + '<end_of_turn>\n' -}}{%- endif -%}
{%- if add_generation_prompt -%}{{- '<start_of_turn>model\n' -}}{%- endif -%}
"""

_PHI3 = r"""
{%- if messages and messages[0].role == 'system' -%}
  {%- set system = messages[0].content -%}
  {%- set loop_messages = messages[1:] -%}
{%- else -%}
  {%- set system = '' -%}
  {%- set loop_messages = messages -%}
{%- endif -%}
{%- if system or tools -%}
  {{- '<|system|>\n' + system -}}
  {%- if tools -%}{{- ('\n\n' if system else '') + tool_block(tools) -}}{%- endif -%}
  {{- '<|end|>\n' -}}
{%- endif -%}
{%- for message in loop_messages -%}
  {%- if message.role == 'tool' -%}
    {%- if loop.first or loop_messages[loop.index0 - 1].role != 'tool' -%}{{- '<|user|>' -}}{%- endif -%}
    {{- tool_response(message) -}}
    {%- if loop.last or loop_messages[loop.index0 + 1].role != 'tool' -%}{{- '<|end|>\n' -}}{%- endif -%}
  {%- else -%}
    {{- '<|' + message.role + '|>\n' + message.content -}}
    {%- if message.tool_calls -%}{{- tool_calls_text(message, message.content) -}}{%- endif -%}
    {{- '<|end|>\n' -}}
  {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<|assistant|>\n' -}}{%- endif -%}
"""

# DeepSeek (V2/V3/R1 family): fullwidth-bar markers; earlier answers lose their reasoning as R1's does.
_DEEPSEEK = r"""
{{- bos_token -}}
{%- if messages and messages[0].role == 'system' -%}
  {%- set system = messages[0].content -%}
  {%- set loop_messages = messages[1:] -%}
{%- else -%}
  {%- set system = '' -%}
  {%- set loop_messages = messages -%}
{%- endif -%}
{{- system -}}
{%- if tools -%}{{- ('\n\n' if system else '') + tool_block(tools) -}}{%- endif -%}
{%- for message in loop_messages -%}
  {%- if message.role == 'tool' -%}
    {%- if loop.first or loop_messages[loop.index0 - 1].role != 'tool' -%}{{- '<｜User｜>' -}}{%- endif -%}
    {{- tool_response(message) -}}
  {%- elif message.role == 'assistant' -%}
    {%- set content = message.content -%}
    {%- if '</think>' in content -%}
      {%- set content = content.split('</think>')[-1].lstrip('\n') -%}
    {%- endif -%}
    {{- '<｜Assistant｜>' + content -}}
    {%- if message.tool_calls -%}{{- tool_calls_text(message, content) -}}{%- endif -%}
    {{- '<｜end▁of▁sentence｜>' -}}
  {%- else -%}
    {{- '<｜User｜>' + message.content -}}
  {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
  {{- '<｜Assistant｜>' -}}
  {%- if enable_thinking -%}{{- '<think>\n' -}}{%- endif -%}
{%- endif -%}
"""

PRESETS: dict[str, str] = {
    "chatml": _MACROS + _CHATML_PLAIN,
    "qwen3": _MACROS + _QWEN3,
    "llama3": _MACROS + _LLAMA3,
    "gemma": _MACROS + _GEMMA,
    "phi3": _MACROS + _PHI3,
    "deepseek": _MACROS + _DEEPSEEK,
}

STOP_STRINGS: dict[str, tuple[str, ...]] = {
    "chatml": ("<|im_end|>", "<|endoftext|>"),
    "qwen3": ("<|im_end|>", "<|endoftext|>"),
    "llama3": ("<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"),
    "gemma": ("<end_of_turn>",),
    "phi3": ("<|end|>", "<|endoftext|>"),
    "deepseek": ("<｜end▁of▁sentence｜>",),
}

# End-of-turn markers recognised in templates that are not presets (a GGUF's or a model.toml's own).
KNOWN_END_MARKERS: tuple[str, ...] = (
    "<|im_end|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<end_of_turn>",
    "<|end|>",
    "<｜end▁of▁sentence｜>",
    "<|endoftext|>",
    "<|END_OF_TURN_TOKEN|>",
)
