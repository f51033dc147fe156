"""``zoo bench``: PyTorch eager against onnxruntime on the same model, side by side in one process."""

from zoo.commands.base import Arguments, Command, exactly_one


def bench(arguments: Arguments, reporter) -> int:
    from zoo.export.bench import bench as run_bench
    from zoo.export.bench import format_table

    source = exactly_one(arguments, "bench", "run", "model")
    record, path = run_bench(**{source: arguments.get(source)}, batches=arguments.integers("batches"),
                             warmup=arguments.integer("warmup", 10), iters=arguments.integer("iters", 100),
                             threads=arguments.integer("threads", minimum=1),
                             profile=arguments.get("profile", "default"))
    reporter.data(format_table(record))
    reporter.say(f"record: {path}")
    return 0


COMMANDS = [Command("bench", "eager vs onnxruntime latency and throughput, one run", bench,
                    keys={"run": "RUN_DIR", "model": "EXPORT_DIR", "batches": "1,8,32", "warmup": "10",
                          "iters": "100", "threads": "N", "profile": "default"})]
