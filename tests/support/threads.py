"""Calls run in a thread, for tests that must notice a hang instead of
hanging themselves."""

import threading
import time


class InThread:
    """Run ``fn(*args)`` in a daemon thread at once, recording what it
    returned or raised, when it finished (:func:`time.monotonic`) and the
    CPU time the thread used.  Joining is bounded by *patience* seconds,
    which subclasses set to their tests' needs; past it the test fails."""

    patience = 30.0

    def __init__(self, fn, *args):
        self.result = self.error = self.finished_at = self.cpu = None
        self._thread = threading.Thread(target=self._run, args=(fn, args), daemon=True)
        self._thread.start()

    def _run(self, fn, args):
        start = time.thread_time()
        try:
            self.result = fn(*args)
        except BaseException as e:
            self.error = e
        finally:
            self.cpu = time.thread_time() - start
            self.finished_at = time.monotonic()

    @property
    def done(self):
        return not self._thread.is_alive()

    def outcome(self, timeout=None):
        """``(result, error)``, once the call has ended."""
        timeout = self.patience if timeout is None else timeout
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the call hung for %gs" % timeout
        return self.result, self.error

    def value(self, timeout=None):
        """What the call returned; what it raised is raised again."""
        result, error = self.outcome(timeout)
        if error is not None:
            raise error
        return result
