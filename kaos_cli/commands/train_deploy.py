"""`kaos train deploy`: the inputs of the workspace's training (source, data bundle or manifest, hyperparameters),
checked before anything is uploaded, then uploaded one after the other."""
from pathlib import Path

import click

from kaos_cli import render
from kaos_cli.errors import KaosError
from kaos_cli.guards import warn_when_unhealthy, workspace_session
from kaos_cli.options import check_resources, resource_options
from kaos_cli.output import emit, output_option, progress_wanted
from kaos_cli.state import parse_json

NOTHING_TO_DEPLOY = ("--source_bundle and/or --data_bundle or --data_manifest and/or --hyperparams need to be "
                     "defined for training")
DATA_EXCLUSIVE = "Illegal usage: `data_bundle` is mutually exclusive with arguments `data_manifest`."
NO_HYPERPARAMS = "/params.null"


def check_manifest(path) -> None:
    """Every non-blank line must be a JSON object with `url` and `path` (the backend checks the rest)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise KaosError(f"The manifest file is invalid: {exc}") from None
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            entry = parse_json(text)
        except ValueError:
            entry = None
        if not isinstance(entry, dict) or "url" not in entry or "path" not in entry:
            raise KaosError(f"The manifest file is invalid: line {number} is not a JSON object with "
                            "`url` and `path`")


def check_hyperparams(path) -> None:
    """A JSON object of non-empty lists (`{}` clears the hyperparameters)."""
    try:
        params = parse_json(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise KaosError(f"The hyperparameters file {path} is not valid JSON: {first}") from None
    if not isinstance(params, dict) or not all(isinstance(values, list) and values for values in params.values()):
        raise KaosError(f"The hyperparameters file {path} must hold a JSON object of non-empty lists, "
                        'like {"lr": [0.1, 0.01], "depth": [3, 5]}')


def _submit_folder(label: str, folder, upload, builds: bool = False):
    """Zip and upload the bundle directory `folder` ("source bundle" or "data bundle"): `upload(zip_path, digest)`
    returns the BundleUpload; `builds` says whether an image build it started is reported."""
    from kaos_cli.folder_upload import upload_folder

    render.info(f"Submitting {label}: {folder}")
    answer = upload_folder(folder, f"{label.split()[0]}.zip", label, upload, progress=progress_wanted())
    render.success(f"Setting {label}: /{answer.glob_name}")
    if builds and answer.job_id:
        render.success(f"Building image: job {answer.job_id}")
    render.echo()
    return answer


def _submit_source(client, workspace, source_bundle, resources, inputs_follow=False):
    return _submit_folder("source bundle", source_bundle, lambda zip_path, digest: client.upload_train_source(
        workspace, zip_path, digest=digest, inputs_follow=inputs_follow, **resources), builds=True)


def _submit_data(client, workspace, data_bundle, resources, inputs_follow=False):
    return _submit_folder("data bundle", data_bundle, lambda zip_path, digest: client.upload_features(
        workspace, zip_path, digest=digest, inputs_follow=inputs_follow, **resources))


def _submit_manifest(client, workspace, data_manifest, resources, inputs_follow=False):
    render.info(f"Submitting data manifest bundle: {data_manifest}")
    answer = client.upload_manifest(workspace, data_manifest, inputs_follow=inputs_follow, **resources)
    render.success(f"Setting data manifest bundle: /{answer.glob_name}")
    render.echo()
    return answer


def _submit_hyperparams(client, workspace, hyperparams, parallelism, resources, inputs_follow=False):
    render.info(f"Submitting hyperparams bundle: {hyperparams}")
    answer = client.upload_params(workspace, hyperparams, parallelism=parallelism, inputs_follow=inputs_follow,
                                  **resources)
    glob_name = answer.glob_name
    combinations = answer.params
    if not combinations or glob_name == NO_HYPERPARAMS.lstrip("/"):
        render.success(f"Setting hyperparameters bundle: {NO_HYPERPARAMS} (no hyperparameters)")
        render.echo()
        return answer
    render.success(f"Setting hyperparameters bundle: /{glob_name}/*")
    render.echo()
    render.echo(f"CURRENT HYPERPARAMETERS ({len(combinations)})")
    render.echo()
    keys = list(combinations[0])
    rows = [[index] + [combination.get(key) for key in keys] for index, combination in enumerate(combinations)]
    render.print_table(["ind"] + keys, rows, justify="center")
    render.echo()
    return answer


def inputs_row(inputs) -> list:
    """The `Image | Data | Hyperparams` cells of `train_inspect`'s TrainPipelineInfo."""
    image_state = inputs.image_state
    if image_state == "building":
        image = render.mark(None, building=True)
    elif image_state == "ready" and inputs.image:
        image = render.mark(inputs.image)
    else:
        image = render.CROSS
    hyper_glob = inputs.hyper_glob
    hyper = render.CROSS if not hyper_glob or hyper_glob == NO_HYPERPARAMS else render.mark(hyper_glob)
    return [image, render.mark(inputs.data_glob), hyper]


HOLD_MINUTES = 10  # how long the backend waits for a deploy's next input (kaos_backend/services/train.py)


def standing_note(trained: dict) -> str:
    """Why a deploy starts no training: the job of these inputs that stands (TrainPipelineInfo.trained)."""
    job, state = trained.get("job_id"), trained.get("state")
    if state in ("JOB_STARTING", "JOB_RUNNING"):
        return (f"These inputs are training in job {job} ({state}): nothing new starts, and other --cpu/--memory/"
                "--gpu given now are not kept for later: deploy them again once it has failed or been killed")
    if state == "JOB_SUCCESS":
        return f"These inputs were trained by job {job} ({state}): nothing new starts"
    return (f"These inputs ended in job {job} ({state}) with these same limits: nothing new starts; other "
            "--cpu/--memory/--gpu try them again")


@click.command(short_help="Deploy a training job", context_settings={"help_option_names": ["--help"]})
@click.option("-s", "--source_bundle", type=click.Path(exists=True, file_okay=False),
              help="Directory of the source bundle (Dockerfile and model/)")
@click.option("-d", "--data_bundle", type=click.Path(exists=True, file_okay=False),
              help="Directory of the data bundle [NOTE: Mutually exclusive with --data_manifest]")
@click.option("-m", "--data_manifest", type=click.Path(exists=True, dir_okay=False),
              help="Data manifest file: one JSON object with url and path per line "
                   "[NOTE: Mutually exclusive with --data_bundle]")
@click.option("-h", "--hyperparams", type=click.Path(exists=True, dir_okay=False),
              help="JSON file of hyperparameter lists; every combination is trained")
@click.option("-p", "--parallelism", type=click.IntRange(min=1),
              help="How many hyperparameter combinations train at once")
@resource_options("per job")
@output_option
def deploy(source_bundle, data_bundle, data_manifest, hyperparams, parallelism, cpu, memory, gpu):
    """Set the inputs of the workspace's training: source, data (bundle or manifest), hyperparameters.
    With -o json|yaml: `{"source"|"data"|"manifest"|"hyperparams": <each upload route's answer>, "inputs":
    <GET /train/<ws>/inspect's answer>}`, the uploads made only."""
    if data_bundle and data_manifest:
        raise click.UsageError(DATA_EXCLUSIVE, ctx=click.get_current_context())
    if not any((source_bundle, data_bundle, data_manifest, hyperparams)):
        raise KaosError(NOTHING_TO_DEPLOY, level="Warning")
    check_resources(cpu, memory, gpu)
    from kaos_cli.bundles import check_bundle_directory

    for folder in (source_bundle, data_bundle):
        if folder:
            check_bundle_directory(folder)  # every folder, before the first upload
    if data_manifest:
        check_manifest(data_manifest)
    if hyperparams:
        check_hyperparams(hyperparams)
    client, workspace = workspace_session()
    warn_when_unhealthy(client)
    if parallelism is not None and not hyperparams:
        render.warning("--parallelism applies to --hyperparams only; ignored")
    resources = {"cpu": cpu, "memory": memory, "gpu": gpu}
    answers = {}
    # every upload but the last says that more inputs follow: no training starts on a part of this deploy
    given = [name for name, value in (("source", source_bundle), ("data", data_bundle), ("manifest", data_manifest),
                                      ("hyperparams", hyperparams)) if value]
    follows = {name: name != given[-1] for name in given}
    try:
        if source_bundle:
            answers["source"] = _submit_source(client, workspace, source_bundle, resources, follows["source"])
        if data_bundle:
            answers["data"] = _submit_data(client, workspace, data_bundle, resources, follows["data"])
        if data_manifest:
            answers["manifest"] = _submit_manifest(client, workspace, data_manifest, resources, follows["manifest"])
        if hyperparams:
            answers["hyperparams"] = _submit_hyperparams(client, workspace, hyperparams, parallelism, resources,
                                                         follows["hyperparams"])
    except KeyboardInterrupt:
        if answers:  # uploaded with inputs_follow: the backend waits for the rest (services/train.py, HOLD_SECONDS)
            render.warning(f"Interrupted after uploading the {' and '.join(answers)}: no training starts for "
                           f"{HOLD_MINUTES} minutes while the rest of this deploy is awaited, then one trains on "
                           "the workspace's inputs as they are - kaos train deploy again to give them")
        raise
    for warning in dict.fromkeys(answer.warning for answer in answers.values() if answer.warning):
        render.warning(warning)  # the resources asked for are not enforced here: said once
    inputs = client.train_inspect(workspace)
    if emit(dict(answers, inputs=inputs)):
        return
    render.echo("CURRENT TRAINING INPUTS")
    render.echo()
    render.print_table(["Image", "Data", "Hyperparams"], [inputs_row(inputs)], justify="center")
    if inputs.trained:
        render.info(standing_note(inputs.trained))
