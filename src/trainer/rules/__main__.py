"""``python -m trainer.rules [OP]``: the table of rules, or one rule's whole derivation."""

from __future__ import annotations

import sys

from trainer.rules import BY_NAME, RULES, describe, summary_line


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        width = max(len(rule.name) for rule in RULES)
        print("\n".join(summary_line(rule, width) for rule in RULES))
        return 0
    unknown = [name for name in args if name not in BY_NAME]
    if unknown:
        print(f"error: no rule named {', '.join(unknown)}; the rules: "
              f"{', '.join(BY_NAME)}", file=sys.stderr)
        return 2
    print("\n\n".join(describe(BY_NAME[name]) for name in args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
