"""Bash completion of words that hold a `:` or `=` (a model id `1909d_5c3ca:828c4e`, `--model_id=...`).

Bash splits the line at the characters of COMP_WORDBREAKS (`:` and `=` among them by default) both when it fills
COMP_WORDS and when it inserts an answer: in `kaos serve deploy -m 1909d_5c3ca:8<TAB>` click's own script hands
kaos the words `1909d_5c3ca`, `:`, `8`, and bash replaces only the `8`. So, as argcomplete does, this script
hands kaos the line up to the cursor and COMP_WORDBREAKS instead: kaos splits the line into the words a command
would get (click's `split_arg_string`), completes the last one whole, and answers each value without the start
that bash keeps in place (up to and including the word's last break character). The answers are click's
(`type,value` lines), so the values themselves come from the same `shell_complete` callbacks as in zsh and fish.
"""
import os
from typing import List, Tuple

from click.shell_completion import BashComplete, CompletionItem, split_arg_string

DEFAULT_WORDBREAKS = " \t\n\"'@><=;|&(:"  # bash 5's COMP_WORDBREAKS, for a caller that does not pass it
END = "_"  # appended to the line: it ends the last word, or is a word of its own after a space

SOURCE = """\
%(complete_func)s() {
    local answer kind value
    answer=$(env COMP_LINE="${COMP_LINE:0:COMP_POINT}" COMP_WORDBREAKS="$COMP_WORDBREAKS" \\
        %(complete_var)s=bash_complete "$1")
    while IFS=',' read -r kind value; do
        case $kind in
            dir) COMPREPLY=(); compopt -o dirnames ;;
            file) COMPREPLY=(); compopt -o default ;;
            plain) COMPREPLY+=("$value") ;;
        esac
    done <<< "$answer"
    return 0
}

complete -o nosort -F %(complete_func)s %(prog_name)s
"""


class KaosBashComplete(BashComplete):
    """click's bash completion reading COMP_LINE (cut at the cursor) and COMP_WORDBREAKS. A script sourced from
    an older kaos passes COMP_WORDS and COMP_CWORD only: those are read as click reads them."""
    source_template = SOURCE
    kept = ""  # the start of the word being completed that bash leaves in place

    def get_completion_args(self) -> Tuple[List[str], str]:
        line = os.environ.get("COMP_LINE")
        if line is None:
            return super().get_completion_args()
        words = split_arg_string(line + END)
        incomplete = words.pop()[:-len(END)]
        self.kept = kept_by_bash(line, incomplete, os.environ.get("COMP_WORDBREAKS", DEFAULT_WORDBREAKS))
        return words[1:], incomplete

    def format_completion(self, item: CompletionItem) -> str:
        return f"{item.type},{inserted(str(item.value), self.kept)}"


def kept_by_bash(line: str, incomplete: str, wordbreaks: str) -> str:
    """The start of `incomplete` (the last word of `line`) that bash does not replace: up to and including its
    last character of `wordbreaks`; "" when it has none, or was typed with quotes or escapes (bash does not
    break a quoted word)."""
    before = line[:len(line) - len(incomplete)]
    if not incomplete or not line.endswith(incomplete) or not (before == "" or before[-1].isspace()):
        return ""
    cut = max(incomplete.rfind(character) for character in wordbreaks) if wordbreaks else -1
    return incomplete[:cut + 1]


def inserted(value: str, kept: str) -> str:
    """`value`, a completion of the whole word, as bash is to insert it after `kept`. The value of an option
    given as `--option=value` completes the part after the `=`."""
    for start in (kept, kept.partition("=")[2]):
        if value.startswith(start):
            return value[len(start):]
    return value
