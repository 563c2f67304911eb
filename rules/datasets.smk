# Stage 1: the inputs. Generate the synthetic cohort, then discover, validate and
# split each dataset's subjects into results/{dataset}/subjects.tsv.


# One rule per kind of synthetic cohort: their files follow different releases' naming.
for kind in SYNTHETIC_KINDS:

    rule:
        name:
            f"synthesize_{kind}_subject"
        output:
            **synthetic_outputs(kind),
            qc="results/{dataset}/qc/synthetic/{subject}.png",
        log:
            "logs/{dataset}/synthesize/{subject}.log",
        params:
            synthetic=synthetic_params,
            root=lambda wc: f"results/{wc.dataset}/raw",
        threads: 1
        resources:
            mem_mb=lambda wc: 500 + int(2500 / synthetic_params(wc)["spacing_mm"] ** 3),
            runtime=lambda wc: 5 + int(5 / synthetic_params(wc)["spacing_mm"] ** 3),
        wildcard_constraints:
            dataset=one_of(n for n, d in DATASETS.items() if d.is_synthetic and d.synthetic["kind"] == kind),
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
        entry=manifest_entry,
        cache=lambda wc: f"results/{wc.dataset}/.validation-cache.json",
    threads: 2
    resources:
        mem_mb=4000,  # one subject's images per thread at a time, whatever the cohort's size
        runtime=manifest_runtime,
    conda:
        "../envs/io.yaml"
    script:
        "../scripts/manifest.py"
