"""`seqimpute pretrained list|show`: the shipped pretrained models and their cards."""

from __future__ import annotations


def add_pretrained(sub) -> None:
    p = sub.add_parser("pretrained", help="list the shipped pretrained models, or show one's model card")
    p.add_argument("action", choices=["list", "show"])
    p.add_argument("name", nargs="?", help="the model to show (show)")
    p.set_defaults(func=cmd_pretrained)


def cmd_pretrained(args) -> int:
    from .. import pretrained
    from ..errors import SeqImputeError

    if args.action == "list":
        if args.name:
            raise SeqImputeError("`seqimpute pretrained list` takes no name; `seqimpute pretrained show NAME` shows one.")
        print(pretrained.render_list())
        return 0
    if not args.name:
        raise SeqImputeError(f"name the model to show: {', '.join(pretrained.names())}.")
    print(pretrained.render_card(pretrained.card(args.name)))
    return 0
