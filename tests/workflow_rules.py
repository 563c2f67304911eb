"""Print, as JSON, the workflow's rules as Snakemake parses them and the search path its script jobs get.

tests/test_environment.py runs this in a process of its own: parsing the Snakefile changes the process (its
sys.path, working directory and logging). Usage: ``python tests/workflow_rules.py SNAKEFILE``.
"""

import json
import sys
from pathlib import Path

from snakemake.api import SnakemakeApi
from snakemake.common import get_snakemake_searchpaths
from snakemake.rules import Rule
from snakemake.settings.types import OutputSettings, ResourceSettings


def rule_file(rule: Rule, path: str | None) -> str | None:
    """A path of a rule's directive, resolved as Snakemake does: relative to the file that defines the rule."""
    return None if path is None else rule.basedir.join(path).get_path_or_uri(secret_free=True)


def describe_workflow(snakefile: Path) -> dict:
    """Every rule's conda environment and script, and the directories that every script job's preamble appends
    to sys.path (Snakemake's own and its process's sys.path, where including the Snakefile put its directory)."""
    with SnakemakeApi(OutputSettings(enable_file_logging=False)) as api:
        workflow_api = api.workflow(resource_settings=ResourceSettings(cores=1), snakefile=snakefile,
                                    workdir=snakefile.parent)
        workflow = workflow_api._workflow  # the API has no public accessor for the parsed rules
        rules = [{"name": rule.name, "conda": rule_file(rule, rule.conda_env), "script": rule_file(rule, rule.script)}
                 for rule in workflow.rules]
        return {"rules": rules, "job_search_path": get_snakemake_searchpaths()}


if __name__ == "__main__":
    print(json.dumps(describe_workflow(Path(sys.argv[1]).resolve())))
