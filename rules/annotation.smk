# Human validation of the stage-1 judge (paper appendix C, Table 12), as a kit: a sample of the candidates the judge
# removed, per language, as an annotation sheet (TSV and a self-contained HTML page) with a hidden key; then Table 12
# from the sheets the annotators fill and return to annotation.filled_dir (pending rows until they do).


rule annotation_sheet:
    input:
        verdicts=get_annotation_verdicts,
        train=data("{lang}", "train.jsonl"),
        corpus=data("{lang}", "corpus.jsonl"),
    output:
        sheet=annotation_file("{lang}", "sheet.tsv"),
        page=annotation_file("{lang}", "sheet.html"),
        key=annotation_file("{lang}", "key.tsv"),
    params:
        kit=get_annotation_params,
    log:
        log_file("annotation_sheet", "{lang}"),
    benchmark:
        benchmark_file("annotation_sheet", "{lang}")
    conda:
        conda_env("cpu")
    shell:
        "python -m boostmdr.annotate sheet --verdicts {input.verdicts} --train {input.train} --corpus {input.corpus}"
        " --lang {wildcards.lang} --keep {params.kit[keep]} --per-language {params.kit[per_language]}"
        " --seed {params.kit[seed]} --sample {params.kit[sample]}"
        " --sheet {output.sheet} --page {output.page} --key {output.key} --log {log}"


rule annotation_table:
    input:
        key_files=expand(annotation_file("{lang}", "key.tsv"), lang=annotation_languages()),
        sheets=get_filled_sheets,
    output:
        md=table_file("table12", "md"),
        csv=table_file("table12", "csv"),
        tex=table_file("table12", "tex"),
        html=report(
            table_file("table12", "html"),
            caption="../report/table12.rst",
            category="Stage 1",
            labels={"table": "table12"},
        ),
    params:
        languages=" ".join(annotation_languages()),
        keep=annotation_settings()["keep"],
        sample=annotation_settings()["sample"],
        filled_dir=shlex.quote(filled_sheets_dir()),
    log:
        log_file("annotation_table", "table12"),
    localrule: True
    conda:
        conda_env("cpu")
    shell:
        "python -m boostmdr.annotate agreement --keys {input.key_files} --sheets {input.sheets:q}"
        " --languages {params.languages} --keep {params.keep} --sample {params.sample}"
        " --filled-dir {params.filled_dir} --out {output} --log {log}"
