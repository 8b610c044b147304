"""How the input tokens a source reports relate to its cache tokens (no heavy imports: the CLI reads these
for its option defaults before any command runs)."""

INCLUSIVE = "inclusive"  # cache reads and writes are part of the reported input (OpenAI's prompt_tokens)
EXCLUSIVE = "exclusive"  # cache reads and writes come on top of the reported input (Anthropic's input_tokens)
AUTO = "auto"
USAGE_STYLES = (AUTO, INCLUSIVE, EXCLUSIVE)
