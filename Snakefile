# taskgroup: which tasks should be learned together, under a compute budget.
# Table of contents. Experiment facts: config.yaml (schema: schemas/config.schema.yaml).
# Runtime settings (cores, executor, cluster): profiles/.


report: "report/workflow.rst"


configfile: "config.yaml"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/collect.smk"
include: "rules/estimate.smk"
include: "rules/select.smk"


rule all:
    default_target: True
    input:
        rules.collect.output,
        rules.select.output,
        rules.estimates.output if ESTIMATES else [],
        rules.affinity.output if STRATEGY.estimation == "recorded" else [],
