"""Arguments several commands share: the run folder, as --run or --out (torchrun takes --run for its --run-path)."""

import argparse

import pytest

from seqimpute.cli import build_parser, main

# each command that takes a run folder as an option, with the other arguments it needs to parse
RUN_COMMANDS = {"train": [], "demo": ["--minutes", "1"]}


def _commands() -> dict:
    parser = build_parser()
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def test_the_commands_that_take_run_are_the_ones_checked_here():
    takes_run = {name for name, p in _commands().items() if any("--run" in a.option_strings for a in p._actions)}
    assert takes_run == set(RUN_COMMANDS)  # a new command with --run must be checked below too


@pytest.mark.parametrize("command", sorted(RUN_COMMANDS))
def test_out_names_the_same_run_folder_as_run(command):
    parser = build_parser()
    by_run = parser.parse_args([command, "--run", "runs/x", *RUN_COMMANDS[command]])
    by_out = parser.parse_args([command, *RUN_COMMANDS[command], "--out", "runs/x"])
    assert by_run.run == "runs/x" and vars(by_run) == vars(by_out)


@pytest.mark.parametrize("command", sorted(RUN_COMMANDS))
def test_run_and_out_together_are_refused(command, capsys):
    assert main([command, "--run", "runs/a", "--out", "runs/b", *RUN_COMMANDS[command]]) == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_train_needs_one_of_run_and_out_and_demo_has_a_default(capsys):
    assert main(["train", "--model", "gpsi-add"]) == 2
    assert "one of the arguments --run --out is required" in capsys.readouterr().err
    assert build_parser().parse_args(["demo"]).run == "runs/demo"


def test_torchrun_accepts_out_where_it_refuses_run(capsys):
    """What torchrun's own parser makes of the README's command line (it reads abbreviations of its options)."""
    run = pytest.importorskip("torch.distributed.run")
    argv = ["--standalone", "--nproc_per_node", "2", "-m", "seqimpute", "train", "--model", "gpsi-add"]
    args = run.get_args_parser().parse_args([*argv, "--out", "runs/ddp"])
    assert args.training_script == "seqimpute" and args.training_script_args == ["train", "--model", "gpsi-add",
                                                                                 "--out", "runs/ddp"]
    with pytest.raises(SystemExit):
        run.get_args_parser().parse_args([*argv, "--run", "runs/ddp"])
    assert "ambiguous option: --run could match --run-path" in capsys.readouterr().err


def test_help_and_argument_errors_do_not_import_torch():
    """`seqimpute --help` and a mistyped command answer without paying for torch's import (seconds on a CPU)."""
    import subprocess
    import sys

    code = ("import sys\nfrom seqimpute.cli import main\n"
            "for argv in (['--help'], ['train', '--help'], ['train', '--bogus'], ['fit-transform']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "print('torch' in sys.modules, 'sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "False False", out.stderr[-2000:]


@pytest.mark.parametrize("command", [["train", "--model", "gpsi-add", "--data", "sklearn-digits", "--mask", "mcar:0.5",
                                      "--updates", "1"], ["bench", "--model", "gpsi-add", "--steps", "1"]])
@pytest.mark.parametrize("key, flag", [("precision", "--precision fp32"), ("clock", "--clock cpu")])
def test_a_setting_with_its_own_flag_has_one_spelling(tmp_path, capsys, command, key, flag):
    value = flag.split()[1]
    argv = command + (["--run", str(tmp_path / "r")] if command[0] == "train" else []) + ["--set", f"{key}={value}"]
    assert main(argv) == 2
    assert f"give {flag} instead of --set {key}=" in capsys.readouterr().err
