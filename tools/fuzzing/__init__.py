"""The graphdsl fuzzer's parts; `tools/fuzz.py` is the command line.

- `case`: one input: the command line, the files of its folder (specs, FIFOs, device nodes, links),
  how stdout is connected; written to and read from the corpus.
- `sandbox`: runs a case in a forked child of a process that imported graphdsl once (or, for the
  cases about the interpreter's exit, a fresh `graphdsl` process), under time, memory and file-size
  limits, in a temporary folder; returns what came out.
- `oracle`: what counts as a finding (traceback, hang, memory, wrong exit code, files written on
  error, inputs or device nodes replaced, raw control characters, floods, disclosure, wrong rejects).
- `seeds`, `grammar`, `synth`, `mutate`, `bombs`, `fscases`: where inputs come from.
- `minimize`: delta debugging of a failing case; `campaign`: the run, its figures and the corpus.

The package imports graphdsl; graphdsl never imports it.
"""
