"""The ``lagfam`` command line: output content and exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lagrangian_family import cli, zoo
from lagrangian_family.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def assert_fits(text: str, width: int = 100):
    too_long = [line for line in text.splitlines() if len(line) > width]
    assert not too_long, too_long


# -- classify ---------------------------------------------------------------------------------------

def test_classify_zoo_name(capsys):
    rc, out, err = run(capsys, "classify", "beta_vae")
    assert rc == 0 and err == ""
    assert "β-VAE" in out and "Higgins et al. 2017" in out
    assert "likelihood-based (T1)" in out
    assert "beta - 1" in out
    assert "KL(q(z) || p(z))" in out and "E_{q(z)}[KL(q(x|z) || p(x|z))]" in out
    assert "beta >= 0" in out
    assert "consistency    enforced" in out
    assert "H_q(x)" in out
    assert_fits(out)


def test_classify_multipliers_are_an_aligned_table(capsys):
    _, out, _ = run(capsys, "classify", "beta_vae")
    lines = out.splitlines()
    head = next(i for i, line in enumerate(lines) if "multipliers" in line)
    col = lines[head].index("divergence")
    assert lines[head + 1].index("KL(q(z) || p(z))") == col
    assert lines[head + 2].index("E_{q(z)}") == col


LONG_LAMBDA = ("KL(q(x,z) || p(x,z)) + (first_long_parameter_name + second_long_parameter_name"
               " + third_long_parameter_name) * KL(q(z) || p(z))")


@pytest.mark.parametrize("argv", [("classify", "beta_vae", "--set", "beta=1e999"),
                                  ("classify", "beta_vae", "--set", "beta=" + "9" * 120),
                                  ("classify", LONG_LAMBDA), ("--width", "60", "classify", LONG_LAMBDA)])
def test_classify_long_multipliers_wrap_instead_of_failing(capsys, argv):
    rc, out, err = run(capsys, *argv)
    assert rc == 0 and err == ""
    if argv[-1] == LONG_LAMBDA:
        assert_fits(out, 60 if argv[0] == "--width" else 100)
    lines = out.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("  multipliers"))
    col = lines[head].index("divergence")
    # every divergence of the table starts in the divergence column, however long its λ
    table = lines[head + 1:next(i for i, line in enumerate(lines) if line.startswith("conditions"))]
    starts = [line.index(d) for line in table for d in ("KL(q(x,z) || p(x,z))", "KL(q(z) || p(z))") if d in line]
    assert starts and set(starts) == {col}


def test_classify_long_multiplier_fits_the_width(capsys):
    width = 60
    _, out, _ = run(capsys, "--width", str(width), "classify", LONG_LAMBDA)
    assert "third_long_parameter_name" in out
    assert_fits(out, width)
    lines = out.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("  multipliers"))
    assert lines[head].index("divergence") <= 15 + (width - 15) // 4 + 1


def test_classify_text_objective(capsys):
    rc, out, _ = run(capsys, "classify", "JS(q(x) || p(x)) - E_{p(x,z)}[log q(z|x)]")
    assert rc == 0
    assert "unary likelihood-free (T2)" in out
    assert "alpha2       -1" in out and "maximises I_p" in out
    assert "E_{p(x)}[KL(p(z|x) || q(z|x))]" in out
    assert "not likelihood-based" in out


def test_classify_vmi_does_not_enforce_consistency(capsys):
    _, out, _ = run(capsys, "classify", "vmi")
    assert "not enforced" in out


def test_classify_set_binds_parameters(capsys):
    rc, out, _ = run(capsys, "classify", "beta_vae", "--set", "beta=4")
    assert rc == 0
    assert "alpha1       3" in out and "minimises I_q" in out
    rc, out, _ = run(capsys, "classify", "infovae", "--set", "divergence=kl", "--set", "alpha=1/2")
    assert rc == 0 and "KL(q(z) || p(z))" in out and "MMD" not in out


def test_classify_without_dual_form_says_why(capsys):
    rc, out, _ = run(capsys, "classify", "E_{q(x,z)}[log p(x|z)] + JS(q(x) || p(x))")
    assert rc == 0
    assert "dual form      none:" in out and "< 0" in out


def test_classify_not_computable(capsys):
    rc, out, _ = run(capsys, "classify", "E_{q(z)}[JS(q(x|z) || p(x|z))]")
    assert rc == 0 and "not computable" in out


def test_classify_derivation(capsys):
    rc, out, _ = run(capsys, "classify", "vae", "--derivation")
    assert rc == 0
    assert "derivation:" in out
    assert "L = -E_{q(x,z)}[log p(x|z)]" in out
    assert "(expand KL" in out and "(dual form" in out
    assert_fits(out)


def test_classify_latex(capsys):
    rc, out, _ = run(capsys, "classify", "beta_vae", "--latex")
    assert rc == 0
    assert out.startswith("\\begin{aligned}") and "\\beta" in out and "computability:" not in out.split("\n")[-1]
    rc, out, _ = run(capsys, "classify", "beta_vae", "--latex", "--derivation")
    assert rc == 0 and "\\mathcal{L} &=" in out and "\\text{(expand KL)}" in out


def test_misspelt_zoo_name_exits_2_and_suggests(capsys):
    rc, out, err = run(capsys, "classify", "betavae")
    assert rc == 2 and out == ""
    assert err.startswith("error: ") and "beta_vae" in err


def test_syntax_error_exits_2(capsys):
    rc, out, err = run(capsys, "classify", "E_{q(x,z)}[log p(x|z)")
    assert rc == 2 and out == ""
    assert err.startswith("error: ")


@pytest.mark.parametrize("text", ["KL(q(z) || p(x))", "KL(q(z|x) || p(z))", "E_{q(x)}[log p(x|z)]",
                                  "KL(q(z) || p(z)) * KL(q(x) || p(x))"])
def test_bad_objectives_exit_2(capsys, text):
    rc, _, err = run(capsys, "classify", text)
    assert rc == 2 and err.startswith("error: ") and "expected" in err


def test_bad_set_exits_2(capsys):
    assert run(capsys, "classify", "vae", "--set", "beta")[0] == 2
    rc, _, err = run(capsys, "classify", "vae", "--set", "beta=4")
    assert rc == 2 and "no parameter" in err
    rc, _, err = run(capsys, "classify", "KL(q(z) || p(z))", "--set", "divergence=kl")
    assert rc == 2 and "zoo models only" in err


# -- zoo, table, closure ----------------------------------------------------------------------------

def test_zoo_lists_every_model(capsys):
    rc, out, _ = run(capsys, "zoo")
    assert rc == 0
    for name in zoo.names():
        assert f"\n{name} " in out
    assert "Kingma & Welling 2014" in out
    assert "L = JS(q(x,z) || p(x,z))" in out
    ali = next(line for line in out.splitlines() if line.startswith("ali "))
    assert "T3" in ali
    infogan = next(line for line in out.splitlines() if line.startswith("infogan "))
    assert "-lambda_I" in infogan
    assert_fits(out)


def test_zoo_narrow_terminal(capsys):
    rc, out, _ = run(capsys, "--width", "80", "zoo")
    assert rc == 0
    assert_fits(out, 80)


def test_table(capsys):
    rc, out, _ = run(capsys, "table")
    assert rc == 0
    assert out.startswith("Table 1")
    for name in ("vae", "vae_gan", "ali", "beta_vae", "infovae", "alice", "vmi", "infogan", "cyclegan", "as_vae"):
        assert name in out
    assert "beta_vae(beta=4) + vmi" in out
    assert_fits(out)


def test_closure_theorem1(capsys):
    rc, out, _ = run(capsys, "closure")
    assert rc == 0
    assert out.count("holds") == 3 and "FAILS" not in out
    assert "span(beta_vae, vmi)" in out
    assert_fits(out)


def test_closure_coefficients(capsys):
    expr = "-E_{q(x,z)}[log p(x|z)] + 3 * E_{q(x)}[KL(q(z|x) || p(z))]"
    rc, out, _ = run(capsys, "closure", expr, "--families", "beta_vae,vmi")
    assert rc == 0 and "beta_vae(beta = 3)" in out
    rc, out, _ = run(capsys, "closure", "KL(q(x,z) || p(x,z)) + 2 * KL(q(z) || p(z))")
    assert rc == 0 and "families: infovae, infogan" in out and "infovae" in out.splitlines()[1]


def test_closure_errors(capsys):
    rc, _, err = run(capsys, "closure", "KL(p(x,z) || q(x,z))", "--families", "beta_vae,vmi")
    assert rc == 2 and "cannot express" in err
    rc, _, err = run(capsys, "closure", "--families", "vmi")
    assert rc == 2 and "needs an objective" in err
    rc, _, err = run(capsys, "closure", "vae", "--families", "nosuch")
    assert rc == 2 and err.startswith("error: ")


# -- usage ------------------------------------------------------------------------------------------

def test_usage_errors_exit_2(capsys):
    assert run(capsys, )[0] == 2
    rc, _, err = run(capsys, "nosuch")
    assert rc == 2 and "invalid choice" in err
    assert run(capsys, "classify")[0] == 2
    assert run(capsys, "classify", "vae", "--bogus")[0] == 2


def test_help_exits_0(capsys):
    rc, out, _ = run(capsys, "--help")
    assert rc == 0
    for name in ("classify", "zoo", "table", "closure"):
        assert name in out


# -- the registry -----------------------------------------------------------------------------------

def _configure_echo(parser):
    parser.add_argument("word")


def _run_echo(args):
    print(f"echo {args.word}")
    return 3


def test_add_command_with_lazy_targets(capsys):
    cli.add_command("echo", "print a word", "tests.test_cli:_configure_echo", "tests.test_cli:_run_echo")
    try:
        with pytest.raises(ValueError, match="already registered"):
            cli.add_command("echo", "again", None, _run_echo)
        rc, out, _ = run(capsys, "echo", "hi")
        assert rc == 3 and out == "echo hi\n"
    finally:
        cli.COMMANDS.pop("echo")


def test_plugin_modules_register_commands(capsys, monkeypatch, tmp_path):
    (tmp_path / "lagfam_plugin_ok.py").write_text(textwrap.dedent("""
        def register_cli(add_command):
            add_command("plugin-demo", "a demo", None, "lagfam_plugin_ok:run")

        def run(args):
            print("demo ran")
    """))
    (tmp_path / "lagfam_plugin_broken.py").write_text("raise RuntimeError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(cli, "PLUGIN_MODULES", ["lagfam_plugin_ok", "lagfam_plugin_broken", "lagfam_absent"])
    monkeypatch.setattr(cli, "_LOADED", set())
    try:
        rc, out, err = run(capsys, "plugin-demo")
        assert rc == 0 and out == "demo ran\n"
        assert "lagfam_plugin_broken" in err and "boom" in err
        rc, out, _ = run(capsys, "zoo")  # core commands still work; plugins load once
        assert rc == 0 and "beta_vae" in out
    finally:
        cli.COMMANDS.pop("plugin-demo", None)
        for m in ("lagfam_plugin_ok", "lagfam_plugin_broken"):
            sys.modules.pop(m, None)


# -- as a process -----------------------------------------------------------------------------------

def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["COLUMNS"] = "100"
    return env


def test_module_entry_point_zoo():
    proc = subprocess.run([sys.executable, "-m", "lagrangian_family.cli", "zoo"], capture_output=True, text=True,
                          cwd=ROOT, env=_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "beta_vae" in proc.stdout and "infogan" in proc.stdout


def test_module_entry_point_bad_name_exit_2():
    proc = subprocess.run([sys.executable, "-m", "lagrangian_family.cli", "classify", "betavae"],
                          capture_output=True, text=True, cwd=ROOT, env=_env(), timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "beta_vae" in proc.stderr


def test_cli_imports_no_torch():
    code = "import sys, lagrangian_family.cli as c; c.build_parser(); print('torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=_env(),
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


# -- careless input: a message and exit status 2, never a traceback (issue 7, item 4) ---------------

@pytest.mark.parametrize("value, message", [
    ("1e999999", "too large a number"), ("-1e999999", "too large a number"), ("1e-999999", "too large a number"),
    ("1" * 1001, "at most 1000 digits"), ("inf", "not a finite number"), ("nan", "not a finite number"),
    ("1/0", "divides by zero"), ("1e99999999999999999999", "too large a number"),
])
def test_set_numbers_that_cannot_be_used(capsys, value, message):
    rc, out, err = run(capsys, "classify", "beta_vae", "--set", f"beta={value}")
    assert rc == 2 and out == "" and err.startswith(f"error: --set beta={value[:37]}") and message in err


def test_set_number_digits_limit_is_inclusive(capsys):
    rc, out, _ = run(capsys, "classify", "beta_vae", "--set", "beta=" + "1" * 1000)
    assert rc == 0 and "1" * 60 in out


@pytest.mark.parametrize("argv, message", [
    (("--width", "100000", "zoo"), "--width 100000 is too wide"),
    (("table", "--max-members", "0"), "--max-members 0 is out of range"),
    (("table", "--max-weight", "1000000"), "--max-weight 1000000 is out of range"),
])
def test_sizes_that_would_exhaust_the_machine(capsys, argv, message):
    rc, _, err = run(capsys, *argv)
    assert rc == 2 and err.startswith(f"error: {message}")


@pytest.fixture
def raising_command():
    def install(exc):
        def boom(args):
            raise exc

        cli.add_command("boom", "raise", None, boom, replace=True)

    yield install
    cli.COMMANDS.pop("boom", None)


def test_os_errors_and_interrupts_are_reported_without_traceback(capsys, raising_command):
    raising_command(PermissionError(13, "Permission denied", "/some/where"))
    rc, _, err = run(capsys, "boom")
    assert rc == 2 and err.startswith("error: cannot use /some/where: Permission denied")
    raising_command(KeyboardInterrupt())
    rc, _, err = run(capsys, "boom")
    assert rc == 130 and err == "interrupted\n"
    from lagrangian_family.errors import NonFiniteLossError

    raising_command(NonFiniteLossError("the loss became nan at step 3"))
    rc, _, err = run(capsys, "boom")
    assert rc == 2 and err == "error: the loss became nan at step 3\n"


def test_a_bug_keeps_its_traceback(raising_command):
    raising_command(ZeroDivisionError("a bug"))
    with pytest.raises(ZeroDivisionError, match="a bug"):
        main(["boom"])


QUICK_DEMO = ["--no-table", "--steps", "2", "--ref-steps", "2", "--hidden", "4", "--no-progress"]


@pytest.mark.parametrize("command", [["demo", *QUICK_DEMO], ["experiment", "pareto", "--budget", "smoke"]])
def test_bad_out_folders_exit_2_before_any_work(capsys, tmp_path, command):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for out, message in ((a_file, f"--out {a_file} is a file, not a folder"),
                         (a_file / "sub", f"--out {a_file}/sub cannot be created: {a_file} is a file"),
                         ("", "--out is empty"),
                         ("/proc/lagfam-test-out", "--out /proc/lagfam-test-out cannot be created in /proc")):
        if str(out).startswith("/proc") and not Path("/proc/self").exists():
            continue
        rc, out_text, err = run(capsys, *command, "--out", str(out))
        assert rc == 2 and err.startswith(f"error: {message}"), err
        assert "fix:" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]  # nothing written


@pytest.mark.parametrize("argv, message", [
    (["demo", *QUICK_DEMO, "--alpha", "nan"], "--alpha nan is not usable"),
    (["demo", *QUICK_DEMO, "--steps", "0"], "--steps 0 is out of range"),
    (["demo", *QUICK_DEMO, "--hidden", "1000000000"], "--hidden 1000000000 is out of range"),
    (["demo", *QUICK_DEMO, "--seed", "-1"], "--seed -1 is out of range"),
    (["experiment", "pareto", "--budget", "smoke", "--jobs", "0"], "--jobs 0 is out of range"),
    (["experiment", "pareto", "--budget", "small", "--data", "/no/such/mnist"],
     "the MNIST folder /no/such/mnist does not exist"),
])
def test_bad_numbers_and_data_exit_2_before_any_work(capsys, tmp_path, argv, message):
    out = tmp_path / "out"
    rc, _, err = run(capsys, *argv, "--out", str(out))
    assert rc == 2 and err.startswith(f"error: {message}"), err
    assert not out.exists()


def _unprivileged(cmd: list[str]) -> list[str]:
    """``cmd`` run as a user whom file permissions bind (root without its override capabilities)."""
    if os.geteuid() != 0:
        return cmd
    import shutil

    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: permissions cannot be tested")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--", *cmd]


@pytest.fixture
def locked_down(tmp_path):
    """A read-only folder and an unlistable one (permissions restored afterwards)."""
    ro, hidden = tmp_path / "read-only", tmp_path / "no-access"
    ro.mkdir()
    hidden.mkdir()
    ro.chmod(0o555)
    hidden.chmod(0o000)
    yield ro, hidden
    ro.chmod(0o755)
    hidden.chmod(0o755)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_unwritable_out_and_unreadable_data_exit_2(locked_down):
    ro, hidden = locked_down
    unreadable = ["experiment", "pareto", "--budget", "small", "--data", str(hidden), "--out", str(ro.parent / "out")]
    for args, message in ((["demo", *QUICK_DEMO, "--out", str(ro / "demo")],
                           f"error: --out {ro}/demo cannot be created in {ro}: Permission denied"),
                          (unreadable, f"error: cannot read the MNIST folder {hidden}: Permission denied")):
        proc = subprocess.run(_unprivileged([sys.executable, "-m", "lagrangian_family.cli", *args]),
                              capture_output=True, text=True, cwd=ROOT, env=_env(), timeout=120)
        assert proc.returncode == 2 and proc.stderr.startswith(message), proc.stderr
        assert "Traceback" not in proc.stderr
    assert not (ro / "demo").exists() and not (ro.parent / "out").exists()


def test_classify_prints_reduced_conditions_and_no_dual_form(capsys):
    # 5β − 3 ≥ 0 and β ≥ 0: one condition, β ≥ 3/5 (by hand)
    rc, out, _ = run(capsys, "classify", "(5*beta - 3) * KL(q(z) || p(z)) + beta * MMD(q(z) || p(z))")
    assert rc == 0 and "conditions     beta >= 3/5" in out
    # the objective: its multipliers can never all be ≥ 0, so there is no dual form
    rc, out, _ = run(capsys, "classify",
                     "-3 * E_{q(x,z)}[log q(z|x) - log p(z)] + beta * E_{q(z)}[KL(q(x|z) || p(x|z))]")
    assert rc == 0 and "dual form      none: the multiplier of KL(q(z) || p(z)) would have to be -3 < 0" in out
    assert "conditions" not in out
    assert_fits(out)
