"""``tusk completion bash|zsh``: a shell completion script made from the parser.

The script is static (no call back into ``tusk`` per key press, which would
pay Python's start-up each time): the verbs, each verb's nouns and each
command's flags are written into it as word lists. zsh loads the bash
function through ``bashcompinit``, as many CLIs do.
"""

from __future__ import annotations

import argparse
import shlex


def _subcommands(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    out: dict[str, argparse.ArgumentParser] = {}
    for action in p._actions:  # argparse has no public walk of its tree
        if isinstance(action, argparse._SubParsersAction):
            out.update(action.choices)
    return out


def _flags(p: argparse.ArgumentParser) -> list[str]:
    return sorted(o for a in p._actions for o in a.option_strings if o.startswith("--"))


def bash_script(parser: argparse.ArgumentParser) -> str:
    """A bash completion function for ``tusk`` covering ``parser``'s whole tree."""
    verbs = _subcommands(parser)
    cases: list[str] = []
    def case(key: str, var: str, words: list[str]) -> str:
        return f"        {shlex.quote(key)}) {var}={shlex.quote(' '.join(words))} ;;"

    for verb, vp in sorted(verbs.items()):
        nouns = _subcommands(vp)
        if nouns:
            cases.append(case(verb, "words_for_2", sorted(nouns)))
            for noun, np_ in sorted(nouns.items()):
                cases.append(case(f"{verb} {noun}", "flags", _flags(np_)))
        else:
            cases.append(case(verb, "flags", _flags(vp)))
    body = "\n".join(cases)
    return f"""# tusk completion (bash). Load it with:  source <(tusk completion bash)
_tusk() {{
    local cur words_for_2="" flags="" key
    cur="${{COMP_WORDS[COMP_CWORD]}}"
    if [ "$COMP_CWORD" -eq 1 ]; then
        COMPREPLY=($(compgen -W {shlex.quote(' '.join(sorted(verbs)))} -- "$cur"))
        return
    fi
    key="${{COMP_WORDS[1]}}"
    case "$key" in
{body}
    esac
    if [ "$COMP_CWORD" -eq 2 ] && [ -n "$words_for_2" ] && [[ "$cur" != -* ]]; then
        COMPREPLY=($(compgen -W "$words_for_2" -- "$cur"))
        return
    fi
    if [ -n "$words_for_2" ]; then
        key="${{COMP_WORDS[1]}} ${{COMP_WORDS[2]}}"
        case "$key" in
{body}
        esac
    fi
    if [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "$flags" -- "$cur"))
    else
        COMPREPLY=($(compgen -f -- "$cur"))
    fi
}}
complete -F _tusk tusk
"""


def zsh_script(parser: argparse.ArgumentParser) -> str:
    """The bash function, loaded into zsh through ``bashcompinit``."""
    return ("# tusk completion (zsh). Load it with:  source <(tusk completion zsh)\n"
            "autoload -U +X compinit && compinit\n"
            "autoload -U +X bashcompinit && bashcompinit\n"
            + bash_script(parser).split("\n", 1)[1])
