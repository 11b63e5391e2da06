"""The benchmarks' helper processes and what they share with the main one.

``writer.py`` and ``worker041.py`` are programs, run by path; ``harness.py``
is the code they and the main process have in common.  All of it uses
the standard library only: the pyxs 0.4.1 worker must import the pyxs
installed in its virtual environment, never the checkout's, and the
writer must be the same program whichever client receives its events.
"""
