"""Run one of the project's tools on many configs in one Python process.

``python tests/_tool_sweep.py TOOL RUNS.json`` loads ``TOOL`` (``tools/train.py`` or
``tools/test.py``) as its command line does and calls its ``main(argv)`` once per entry of
``RUNS.json`` (a list of ``{"name": ..., "argv": [...]}``): the same argument parsing, config
merging, runtime completion, data checks and runner as ``python TOOL *argv``, without paying
the interpreter start and the toolbox imports once per config. After each run it prints one line
``SWEEP-RESULT {"name", "ok", "metrics", "error"}``: for ``tools/train.py`` the last validation
metrics the runner's message hub holds, for ``tools/test.py`` the metrics ``main`` returns. A
failing run is reported (with its traceback's tail) and the sweep goes on.
"""
import gc
import importlib.util
import json
import os.path as osp
import sys
import traceback

PREFIX = 'SWEEP-RESULT '


def load_tool(path):
    """The tool's module, loaded from its file under the name ``__sweep_tool__``."""
    spec = importlib.util.spec_from_file_location('__sweep_tool__', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def val_metrics(runner):
    """The last ``val/...`` scalars of ``runner``'s message hub, names without ``val/``."""
    scalars = runner.message_hub.log_scalars
    return {k[len('val/'):]: float(v.current()) for k, v in scalars.items()
            if k.startswith('val/')}


def run_one(tool, argv):
    """``tool.main(argv)``; the metrics it produced."""
    result = tool.main(argv)
    if isinstance(result, dict):  # tools/test.py returns the test metrics
        return {k: float(v) for k, v in result.items()}
    return val_metrics(result)  # tools/train.py returns its runner


def main():
    tool_path, runs_path = sys.argv[1:3]
    tool = load_tool(osp.abspath(tool_path))
    with open(runs_path) as f:
        runs = json.load(f)
    for entry in runs:
        report = dict(name=entry['name'], ok=True, metrics={}, error=None)
        try:
            report['metrics'] = run_one(tool, entry['argv'])
        except BaseException:  # noqa: B902  (SystemExit from argparse or a tool's error too)
            report.update(ok=False, error=traceback.format_exc()[-4000:])
        print(PREFIX + json.dumps(report), flush=True)
        gc.collect()


def run_sweep(repo, tool, runs):
    """Run ``tool`` on ``runs`` (``{name: argv}``) in one process in the folder ``repo``; the
    reports by name. Fails naming every run that failed, with its traceback."""
    from tests.test_tools.test_first_run import run
    runs_file = repo / f'{osp.basename(tool)}_runs.json'
    runs_file.write_text(json.dumps([dict(name=k, argv=v) for k, v in runs.items()]))
    out = run([sys.executable, osp.abspath(__file__), tool, str(runs_file)], cwd=repo,
              timeout=3600)
    reports = parse_reports(out)
    assert sorted(reports) == sorted(runs), out[-3000:]
    failed = {k: r['error'] for k, r in reports.items() if not r['ok']}
    assert not failed, '\n\n'.join(f'{k}:\n{e}' for k, e in failed.items())
    return reports


def parse_reports(output):
    """The ``SWEEP-RESULT`` reports in a sweep's output, by name."""
    reports = {}
    for line in output.splitlines():
        if line.startswith(PREFIX):
            report = json.loads(line[len(PREFIX):])
            reports[report['name']] = report
    return reports


if __name__ == '__main__':
    main()
