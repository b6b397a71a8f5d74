"""The ``headwater`` command (also installed as ``kubectl-headwater``, so ``kubectl headwater ...`` works).

One small function per subcommand, ``_cmd_<name>(args) -> exit code``, registered in
:func:`_build_parser`; add a subcommand by adding both.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from headwater import __version__
from headwater.spec.crdgen import crds, render
from headwater.spec.validation import validate_paths

__all__ = ["main"]


def _cmd_validate(args: argparse.Namespace) -> int:
    """Check manifests offline; 0 when all are valid, 1 when anything is wrong."""
    stdin = sys.stdin.read() if "-" in args.files else None
    findings, documents = validate_paths(args.files, stdin=stdin)
    for finding in findings:
        print(finding)
    if not args.quiet:
        verdict = f"{len(findings)} problem(s)" if findings else "all valid"
        print(f"checked {documents} document(s): {verdict}", file=sys.stderr)
    return 1 if findings else 0


def _cmd_crds(args: argparse.Namespace) -> int:
    """Print the CRDs generated from this version's models (pipe into kubectl apply -f -)."""
    print("---\n".join(render(crd) for crd in crds().values()), end="")
    return 0


def _cmd_operator(args: argparse.Namespace) -> int:
    """Run the operator until interrupted."""
    from headwater.controller.main import run_operator  # noqa: PLC0415 (imported only when the subcommand runs)

    run_operator(args.namespace, verbose=args.verbose, shard=args.shard)
    return 0


def _cmd_step_sql(args: argparse.Namespace) -> int:
    """Run a sql step inside its Job (configured by environment variables)."""
    from headwater.steps import sql  # noqa: PLC0415 (imported only when the subcommand runs)

    return sql.main([])


def _cmd_run(args: argparse.Namespace) -> int:
    """Start a PipelineRun of a Pipeline and print its name."""
    from headwater.cli.manual import start_run  # noqa: PLC0415 (imported only when the subcommand runs)

    name = start_run(args.pipeline, args.namespace, from_step=args.from_step, retry_of=args.retry_of)
    print(f"pipelinerun.headwater.dev/{name} created")
    return 0


def _cmd_lineage(args: argparse.Namespace) -> int:
    """Query the lineage API and print a tree (or JSON)."""
    from headwater.cli import lineage as lineage_cli  # noqa: PLC0415

    try:
        answer = lineage_cli.query(args.query, args.dataset, api=args.api, namespace=args.dataset_namespace,
                                   depth=args.depth, limit=args.limit)
    except lineage_cli.LineageApiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.output == "json":
        print(json.dumps(answer, indent=2))
    elif args.query == "explain":
        print(lineage_cli.render_explain(answer))
    else:
        print(lineage_cli.render_graph(answer))
    return 0


def _cmd_api(args: argparse.Namespace) -> int:
    """Serve the lineage API alone (without the operator)."""
    from headwater.controller.api_server import serve  # noqa: PLC0415
    from headwater.controller.config import load_settings  # noqa: PLC0415

    given = {"database_url": args.database_url, "api_host": args.host, "api_port": args.port, "api_token": args.token,
             "api_write_token": args.write_token, "api_auth_enabled": False if args.no_auth else None}
    return serve(load_settings().model_copy(update={k: v for k, v in given.items() if v is not None}))


def _cmd_db_migrate(args: argparse.Namespace) -> int:
    """Apply the lineage store's migrations (idempotent; safe to run concurrently)."""
    from headwater.controller.config import load_settings  # noqa: PLC0415
    from headwater.lineage.migrations import migrate  # noqa: PLC0415

    url = args.database_url or load_settings().database_url
    if not url:
        print("error: give --database-url or set HEADWATER_DATABASE_URL", file=sys.stderr)
        return 2
    applied = migrate(url)
    print(f"applied migrations {', '.join(map(str, applied))}" if applied else "the schema is up to date")
    return 0


def _add_store_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    api = commands.add_parser("api", help="serve the lineage HTTP API alone")
    api.add_argument("--database-url", default=None, help="default: HEADWATER_DATABASE_URL")
    api.add_argument("--host", default=None, help="address to listen on (default HEADWATER_API_HOST or 127.0.0.1)")
    api.add_argument("--port", type=int, default=None, help="port (default HEADWATER_API_PORT or 8080)")
    api.add_argument("--token", default=None, help="bearer token of the read routes (default HEADWATER_API_TOKEN)")
    api.add_argument("--write-token", default=None, help="bearer token of POST /api/v1/lineage "
                     "(default HEADWATER_API_WRITE_TOKEN)")
    api.add_argument("--no-auth", action="store_true", help="serve every route to anyone who reaches the port "
                     "(same as HEADWATER_API_AUTH_ENABLED=false; logged as a warning)")
    api.set_defaults(func=_cmd_api)
    db = commands.add_parser("db", help="lineage store administration")
    actions = db.add_subparsers(dest="action", required=True, metavar="ACTION")
    migrate = actions.add_parser("migrate", help="apply the schema migrations")
    migrate.add_argument("--database-url", default=None, help="default: HEADWATER_DATABASE_URL")
    migrate.set_defaults(func=_cmd_db_migrate)


def _add_lineage_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    lineage = commands.add_parser("lineage", help="trace a dataset upstream or downstream, or explain it",
                                  description="Query the lineage API (HEADWATER_API_URL, default "
                                  "http://127.0.0.1:8080) with its read token (HEADWATER_API_TOKEN).")
    lineage.add_argument("query", choices=["upstream", "downstream", "explain"])
    lineage.add_argument("dataset", metavar="DATASET", help="dataset name, e.g. analytics.daily_revenue")
    lineage.add_argument("--dataset-namespace", default=None,
                         help="dataset namespace (e.g. postgres://warehouse) when the name alone is ambiguous")
    lineage.add_argument("--depth", type=int, default=None, help="how many hops to follow (1-100, default 20)")
    lineage.add_argument("--limit", type=int, default=None,
                         help="at most this many datasets and edges (1-10000, default 1000)")
    lineage.add_argument("-o", "--output", choices=["tree", "json"], default="tree")
    lineage.add_argument("--api", default=None, help="base URL of the lineage API")
    lineage.set_defaults(func=_cmd_lineage)


def _add_runtime_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    op = commands.add_parser("operator", help="run the operator (the run engine and schedules)")
    op.add_argument("-n", "--namespace", action="append", default=[],
                    help="watch only this namespace (repeatable); default: all, or HEADWATER_NAMESPACES")
    op.add_argument("-v", "--verbose", action="store_true", help="log kopf's own activity too")
    op.add_argument("--shard", metavar="I/N", default=None,
                    help="act only on the namespaces of shard I of N (e.g. 0/3); default: HEADWATER_SHARD, or all")
    op.set_defaults(func=_cmd_operator)

    step = commands.add_parser("step", help="run a step inside its Job")
    kinds = step.add_subparsers(dest="kind", required=True, metavar="KIND")
    kinds.add_parser("sql", help="execute HEADWATER_SQL against HEADWATER_DATABASE_URL").set_defaults(
        func=_cmd_step_sql)

    run = commands.add_parser("run", help="start a PipelineRun of PIPELINE now")
    run.add_argument("pipeline", metavar="PIPELINE")
    run.add_argument("-n", "--namespace", default=None, help="namespace (default: the kubeconfig's)")
    run.add_argument("--from-step", default=None, help="re-run this step and everything downstream of it")
    run.add_argument("--retry-of", default=None, help="re-run only the failed and skipped steps of this run")
    run.set_defaults(func=_cmd_run)


def _cmd_backfill(args: argparse.Namespace) -> int:
    """Create a Backfill (or, with --dry-run, list its slots)."""
    from headwater.cli.backfill import create_backfill  # noqa: PLC0415
    from headwater.pipelines.backfilling import TooManySlotsError  # noqa: PLC0415

    try:
        lines = create_backfill(args.pipeline, args.start, args.end, namespace=args.namespace,
                                max_concurrent=args.max_concurrent, name=args.name, dry_run=args.dry_run)
    except (ValueError, TooManySlotsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


def _add_backfill_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    backfill = commands.add_parser(
        "backfill", help="run PIPELINE once for every schedule slot in a past range",
        description="Create a Backfill: one PipelineRun per slot of the Pipeline's schedule in [--from, --to], "
        "oldest first, at most --max-concurrent at once; each run's steps get the slot as HEADWATER_LOGICAL_TIME.")
    backfill.add_argument("pipeline", metavar="PIPELINE")
    backfill.add_argument("--from", dest="start", required=True, help="first time of the range (RFC 3339)")
    backfill.add_argument("--to", dest="end", required=True, help="last time of the range (RFC 3339), inclusive")
    backfill.add_argument("--max-concurrent", type=int, default=1, help="runs of the backfill at once (default 1)")
    backfill.add_argument("--name", default=None, help="name of the Backfill (default: PIPELINE-backfill-FROM-TO)")
    backfill.add_argument("--dry-run", action="store_true", help="list the slots and their run names; create nothing")
    backfill.add_argument("-n", "--namespace", default=None, help="namespace (default: the kubeconfig's)")
    backfill.set_defaults(func=_cmd_backfill)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="headwater", description="Data pipelines as dependency-ordered Kubernetes Jobs, with lineage."
    )
    parser.add_argument("--version", action="version", version=f"headwater {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    validate = commands.add_parser(
        "validate", help="check Pipeline and PipelineRun manifests offline",
        description="Check Pipeline and PipelineRun manifests with the same rules as the apiserver and the "
        "operator (including dependency cycles). Prints file:document: Kind/name: field: problem; exits 1 "
        "when anything is wrong.",
    )
    validate.add_argument("files", nargs="+", metavar="FILE", help="a YAML file, a directory or - (stdin)")
    validate.add_argument("-q", "--quiet", action="store_true", help="print only the problems")
    validate.set_defaults(func=_cmd_validate)

    commands.add_parser("crds", help="print the CustomResourceDefinitions").set_defaults(func=_cmd_crds)
    _add_runtime_commands(commands)
    _add_lineage_command(commands)
    _add_store_commands(commands)
    _add_backfill_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
