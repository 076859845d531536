"""pyproject.toml installs cleanly: setuptools' own reader takes it without a warning (a
deprecated field would print a boxed warning on every `make install`), and the package
list matches the source tree."""

from __future__ import annotations

import re
import shutil
import tomllib
import warnings
from pathlib import Path

import pytest
from setuptools.config.pyprojecttoml import apply_configuration
from setuptools.dist import Distribution

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"
SPDX_SINCE = (77, 0)  # the first setuptools that takes `license = "MIT"` (PEP 639)


def configured(pyproject: Path) -> Distribution:
    """The distribution as the build backend sees it, any warning raised as an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return apply_configuration(Distribution(), pyproject)


def test_setuptools_reads_the_configuration_without_a_warning() -> None:
    dist = configured(PYPROJECT)
    assert dist.metadata.name == "sockbench"
    assert dist.metadata.license_expression == "MIT"


def test_the_reader_does_fail_on_a_deprecated_field(tmp_path: Path) -> None:
    """The check above is not vacuous: the old license table is refused."""
    text = PYPROJECT.read_text(encoding="utf-8")
    old = re.sub(r'^license = "MIT"$', 'license = { text = "MIT" }', text, count=1, flags=re.M)
    assert old != text
    (tmp_path / "pyproject.toml").write_text(old, encoding="utf-8")
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    with pytest.raises(Exception, match="license"):
        configured(tmp_path / "pyproject.toml")


def test_the_build_requires_a_setuptools_that_takes_the_license_string() -> None:
    requires = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["build-system"]["requires"]
    floors = [re.fullmatch(r"setuptools>=(\d+)\.?(\d*).*", r.replace(" ", "")) for r in requires]
    found = [m for m in floors if m]
    assert found, requires
    assert (int(found[0][1]), int(found[0][2] or 0)) >= SPDX_SINCE


def test_every_package_in_the_tree_is_listed() -> None:
    """A subpackage missing from `packages` is missing from a wheel (not from an editable
    install, which reads the tree): servers/reference/ once was."""
    listed = set(configured(PYPROJECT).packages or [])
    in_tree = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in listed
        if "." not in top
        for init in (ROOT / top).rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert listed == in_tree


def test_the_profiles_ship_with_bench() -> None:
    patterns = configured(PYPROJECT).package_data["bench"]
    shipped = {p.name for pattern in patterns for p in (ROOT / "bench").glob(pattern)}
    assert {"quick.toml", "gate.toml"} <= shipped
    assert shipped == {p.name for p in (ROOT / "bench" / "profiles").glob("*.toml")}


def test_the_editable_install_is_a_plain_pth_file(tmp_path: Path) -> None:
    """`make install` installs in editable mode. With the packages at the root and no
    `package-dir`, setuptools picks a meta path finder and prints "Please be careful
    with folders in your working directory..." on every install; with `package-dir`
    it writes a .pth file and says nothing. (setuptools' private strategy choice: the
    test names the class it expects, so a setuptools that renames it fails loudly.)"""
    from setuptools.command import editable_wheel

    command = editable_wheel.editable_wheel(configured(PYPROJECT))
    command.initialize_options()
    command.project_dir = str(ROOT)
    command.finalize_options()
    strategy = command._select_strategy("sockbench", "py3-none-any", str(tmp_path))
    assert type(strategy).__name__ == "_StaticPth", type(strategy).__name__
