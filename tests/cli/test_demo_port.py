"""``ctsam3d demo --serve --port N`` hands the port to ``ctsam3d serve`` (issue 17, item 12)."""

from __future__ import annotations

import argparse

import pytest

from ctsam3d.cli import demo_cmd, serve_cmd
from ctsam3d.errors import InputError
from ctsam3d.examples import example_case


def _args(**kw) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    demo_cmd.add_arguments(parser)
    args = parser.parse_args([f"--{k.replace('_', '-')}={v}" if v is not True else f"--{k}" for k, v in kw.items()])
    args.quiet, args.verbose = True, False
    return args


@pytest.mark.parametrize("port, expected", [(None, 8000), (8123, 8123)])
def test_serve_gets_the_port(port, expected, tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(serve_cmd, "run", lambda sargs: seen.setdefault("port", sargs.port) and 0)
    args = _args(serve=True, **({"port": port} if port else {}))
    assert demo_cmd._serve(args, example_case().ct, tmp_path) == 0
    assert seen["port"] == expected


@pytest.mark.parametrize("argv, words", [({"port": 8123}, "only used with --serve"),
                                         ({"serve": True, "port": 70000}, "between 1 and 65535")])
def test_bad_port_refused_before_any_work(argv, words, tmp_path):
    args = _args(output=tmp_path / "demo", **argv)
    with pytest.raises(InputError, match=words):
        demo_cmd.run(args)
    assert not (tmp_path / "demo").exists()
