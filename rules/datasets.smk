# Stage 1: the inputs. Generate the synthetic cohort, then discover, validate and
# split each dataset's subjects into results/{dataset}/subjects.tsv.


include: "datasets_inputs.smk"


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
        entry=manifest_entry,
        cache=lambda wc: VALIDATION_CACHE.format(dataset=wc.dataset),
    threads: 2
    resources:
        mem_mb=4000,  # one subject's images per thread at a time, whatever the cohort's size
        runtime=manifest_runtime,
    conda:
        "../envs/io.yaml"
    script:
        "../scripts/manifest.py"
