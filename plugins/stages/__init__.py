"""Built-in plugin family `stages`: the training stages and the commands around them."""

from w2v import hookimpl

W2V_PLUGIN_API = "2.0"


@hookimpl
def w2v_register_components(registrar):
    from .evaluate import EvaluateStage
    from .report import ReportStage
    from .train import FinetuneStage, PretrainStage, TrainStage

    registrar.add_stage("train", TrainStage, default=True)
    registrar.add_stage("pretrain", PretrainStage)
    registrar.add_stage("finetune", FinetuneStage)
    registrar.add_stage("evaluate", EvaluateStage)
    registrar.add_stage("report", ReportStage)


@hookimpl
def w2v_register_commands(registrar):
    from . import featurize

    registrar.add_command("featurize", featurize.configure, featurize.run,
                          help="dump a model's features for a manifest (fp16 shards)")
