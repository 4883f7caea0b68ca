# What `snakemake --report results/report.html` shows besides the tables (each table rule marks its own HTML file):
# tables drawn as figures (a table entry with `figure`) and the configuration the run used. Captions in report/.


rule table_figure:
    input:
        get_table_inputs,
    output:
        png=report(
            figure_file("{table}", "png"),
            caption="../report/figure.rst",
            category="Figures",
            labels={"figure": "{table}"},
        ),
        pdf=figure_file("{table}", "pdf"),
    params:
        rows=get_table_rows,
        languages=LANGS,
        metric=get_table_metric,
        averages=get_table_averages,
        figure=get_figure_params,
    log:
        log_file("table_figure", "{table}"),
    localrule: True
    conda:
        conda_env("cpu")
    script:
        "../scripts/table_figure.py"


rule config_page:
    output:
        report(config_page_file(), caption="../report/config.rst", category="Configuration", labels={"page": "config"}),
    params:
        page=get_config_page_params,
    log:
        log_file("config_page", "config"),
    localrule: True
    conda:
        conda_env("cpu")
    script:
        "../scripts/config_page.py"
