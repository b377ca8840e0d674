"""Mutation check of one PEFT method file with mutmut: do its formula tests catch wrong maths?

    python tools/misc/mutation_check.py lora layers   # vpetl_mm/peft/lora.py and layers.py
    python tools/misc/mutation_check.py adaptformer --tests tests/test_peft/test_patt.py

mutmut changes one operator, constant or call at a time in the functions of the named files
``vpetl_mm/peft/<name>.py`` and runs the formula tests of the methods they register (as
``tests/test_models/test_formula_coverage.py`` lists them, plus ``--tests``) against each change;
a mutant the tests pass "survived". The run works on a copy of
the tree in ``--work-dir`` (the checkout is never modified), forks its test workers from a
server process that has not touched torch (``process_isolation=forkserver``; torch's thread pools
are not fork-safe) and prints the counts and every survivor's diff. Takes minutes per file on
2 cores. mutmut is installed into the running environment when missing.
"""
import argparse
import importlib.util
import os
import os.path as osp
import shutil
import subprocess
import sys

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
MUTMUT = 'mutmut==3.8.1'
COVERAGE = osp.join(ROOT, 'tests', 'test_models', 'test_formula_coverage.py')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('method_files', nargs='+',
                        help='file stems under vpetl_mm/peft/, e.g. lora (the first registers '
                        'the methods; shared ones such as layers may follow)')
    parser.add_argument('--tests', nargs='*', default=[],
                        help='further pytest node ids or files to run against each mutant')
    parser.add_argument('--work-dir', default=osp.join(ROOT, 'work_dirs', 'mutation'),
                        help='where the copy of the tree and mutmut\'s state go')
    return parser.parse_args(argv)


def formula_tests(stems):
    """The formula tests of every method type that the files ``vpetl_mm/peft/<stem>.py``
    register."""
    from vpetl_mm.registry import PEFT_METHODS
    spec = importlib.util.spec_from_file_location('formula_coverage', COVERAGE)
    coverage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(coverage)
    types = [name for name, cls in PEFT_METHODS.module_dict.items()
             if cls.__module__ in {f'vpetl_mm.peft.{s}' for s in stems}
             and name in coverage.FORMULA_TESTS]
    if not types:
        raise SystemExit(f'{stems} register no PEFT method')
    return types, sorted({t for name in types for t in coverage.FORMULA_TESTS[name]})


def copy_tree(dest):
    """The tracked and untracked (not ignored) files of the checkout, copied to ``dest``."""
    files = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard'], cwd=ROOT,
                           check=True, capture_output=True, text=True).stdout.split()
    shutil.rmtree(dest, ignore_errors=True)
    for rel in files:
        if rel.startswith(('vpetl_mm/', 'tests/', 'configs/', 'tools/')) and osp.isfile(
                osp.join(ROOT, rel)):
            os.makedirs(osp.dirname(osp.join(dest, rel)), exist_ok=True)
            shutil.copy2(osp.join(ROOT, rel), osp.join(dest, rel))


def write_config(dest, stems, tests):
    selection = '\n'.join(f'    {t}' for t in tests)
    only = '\n'.join(f'    vpetl_mm/peft/{s}.py' for s in stems)
    with open(osp.join(dest, 'setup.cfg'), 'w') as f:
        f.write(f"""[mutmut]
source_paths=vpetl_mm
only_mutate=
{only}
process_isolation=forkserver
also_copy=
    configs
    tools
pytest_add_cli_args_test_selection=
{selection}
pytest_add_cli_args=
    -p
    no:cacheprovider
    -q
    -x
""")


def main(argv=None):
    args = parse_args(argv)
    for stem in args.method_files:
        if not osp.isfile(osp.join(ROOT, 'vpetl_mm', 'peft', f'{stem}.py')):
            raise SystemExit(f'no file vpetl_mm/peft/{stem}.py')
    if importlib.util.find_spec('mutmut') is None:
        subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', MUTMUT], check=True)
    types, tests = formula_tests(args.method_files)
    tests += args.tests
    dest = osp.abspath(osp.join(args.work_dir, '_'.join(args.method_files)))
    copy_tree(dest)
    write_config(dest, args.method_files, tests)
    files = ', '.join(f'vpetl_mm/peft/{s}.py' for s in args.method_files)
    print(f'mutating {files} ({", ".join(types)}) against:\n  ' + '\n  '.join(tests),
          flush=True)
    mutmut = [sys.executable, '-m', 'mutmut']
    env = dict(os.environ, OMP_NUM_THREADS='1')
    subprocess.run(mutmut + ['run'], cwd=dest, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    results = subprocess.run(mutmut + ['results', '--all', 'true'], cwd=dest, env=env,
                             check=True, capture_output=True, text=True).stdout
    status = [line.rsplit(':', 1)[1].strip() for line in results.splitlines() if ':' in line]
    counts = {s: status.count(s) for s in sorted(set(status))}
    print('mutants: ' + ', '.join(f'{n} {s}' for s, n in counts.items()))
    untested = []
    for line in results.splitlines():
        name, _, state = (part.strip() for part in line.rpartition(':'))
        if state == 'no tests':
            untested.append(name)
        elif state != 'killed' and name:
            diff = subprocess.run(mutmut + ['show', name], cwd=dest, env=env,
                                  capture_output=True, text=True).stdout
            print(f'\n--- {state}: {name}\n{diff}')
    if untested:  # functions the method's tests never call (helpers of other methods, ...)
        print('\nno test reaches: ' + ', '.join(sorted({n.split('__mutmut_')[0]
                                                        for n in untested})))
    return counts


if __name__ == '__main__':
    main()
