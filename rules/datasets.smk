# Stage 1: the inputs. Generate the synthetic cohort, then discover, validate and
# split each dataset's subjects into results/{dataset}/subjects.tsv.


rule synthesize_subject:
    output:
        subject=directory("results/{dataset}/raw/{subject}"),
        qc="results/{dataset}/qc/synthetic/{subject}.png",
    log:
        "logs/{dataset}/synthesize/{subject}.log",
    params:
        synthetic=synthetic_params,
    threads: 1
    resources:
        mem_mb=lambda wc: 500 + int(2500 / synthetic_params(wc)["spacing_mm"] ** 3),
        runtime=lambda wc: 5 + int(5 / synthetic_params(wc)["spacing_mm"] ** 3),
    wildcard_constraints:
        dataset=one_of(SYNTHETIC_DATASETS),
    conda:
        "../envs/io.yaml"
    script:
        "../scripts/synthesize_subject.py"


checkpoint manifest:
    input:
        manifest_inputs,
    output:
        subjects="results/{dataset}/subjects.tsv",
        invalid="results/{dataset}/invalid_subjects.tsv",
    log:
        "logs/{dataset}/manifest.log",
    params:
        name=lambda wc: wc.dataset,
        entry=dataset_entry,
        cache=lambda wc: f"results/{wc.dataset}/.validation-cache.json",
    threads: 2
    resources:
        mem_mb=4000,
        runtime=manifest_runtime,
    conda:
        "../envs/io.yaml"
    script:
        "../scripts/manifest.py"
