"""Read a Terraform configuration (a ``.tf`` file or a folder of them) into an :class:`ImportedApi`.

Theory of operation: the files are parsed into blocks (:mod:`hubbub.infra.hcl`) and nothing is
evaluated up front. The reader finds the ``aws_apigatewayv2_api`` with ``protocol_type =
"WEBSOCKET"`` and walks from it: the routes and stages whose ``api_id`` is that API's id, each
route's ``target`` integration, each integration's Lambda function, each function's
``archive_file``. Only the expressions on that walk are evaluated, so an IAM policy that reads an
AWS account never stops an import. References resolve the way Terraform would after an apply,
with hubbub's own values where AWS would make one up: ``aws_apigatewayv2_api.x.id`` is the API id
hubbub answers to, ``invoke_arn`` and ``arn`` of a function name the function, an integration's
``id`` is its address (so ``"integrations/${aws_apigatewayv2_integration.x.id}"`` leads back to
it). A reference hubbub can't know (``data.aws_ssm_parameter.x.value``) is an error that names
the override: ``--var "data.aws_ssm_parameter.x.value=VALUE"`` answers any reference.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, cast

from hubbub.infra import hcl
from hubbub.infra.hcl import Attribute, Block, Evaluator, to_string
from hubbub.infra.model import (
    Authorizer,
    Function,
    ImportedApi,
    Index,
    InfraError,
    Integration,
    Origin,
    ReadOptions,
    Route,
    Table,
)
from hubbub.infra.terraform_modules import ByName, Instance, Module, Nested

_PSEUDO_DATA = {"archive_file", "aws_caller_identity", "aws_region", "aws_partition"}
# The resource types the model is made of; every other one is only counted in `ignored`.
_MODELLED = {
    "aws_apigatewayv2_api",
    "aws_apigatewayv2_stage",
    "aws_apigatewayv2_route",
    "aws_apigatewayv2_integration",
    "aws_apigatewayv2_authorizer",
    "aws_apigatewayv2_route_response",
    "aws_lambda_function",
    "aws_lambda_layer_version",
    "aws_dynamodb_table",
}
_LAMBDA_DEFAULT_TIMEOUT = 3.0  # Lambda's defaults when the resource sets none
_LAMBDA_DEFAULT_MEMORY = 128


def read(path: Path, options: ReadOptions) -> ImportedApi:
    """The WebSocket API a ``.tf`` file, or the folder of ``.tf`` files at ``path``, defines."""
    path = path.resolve()
    if path.name.endswith(".tf.json"):
        raise InfraError(
            Origin(path),
            "",
            "hubbub reads Terraform's HCL syntax (.tf files), not its JSON syntax (.tf.json)",
        )
    files = sorted(path.glob("*.tf")) if path.is_dir() else [path]
    if not files:
        raise InfraError(Origin(path), "", "no .tf files in this folder")
    api = _Reader(path, files, options).read()
    if path.is_dir():
        for _ in path.glob("*.tf.json"):
            api.ignored[".tf.json file (JSON syntax, not read)"] += 1
    return api


def api_id_for(name: str) -> str:
    """The id hubbub gives an API: its name as a host name label."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "websockets"


class _Reader:
    def __init__(self, path: Path, files: list[Path], options: ReadOptions) -> None:
        self.path, self.options = path, options
        self.folder = path if path.is_dir() else path.parent
        self.tfvars = self._tfvars()
        self.root = Module(self, self.folder, files, "", {})
        self.ignored: Counter[str] = Counter()
        self.api_instance: Instance | None = None
        self.stage_instance: Instance | None = None
        self.everything: list[Instance] = []
        self._api_id: str | None = None
        self._region: str | None = None
        self._stage: str | None = None
        self.account_id = options.vars.get("account_id", "123456789012")

    # -- variables ----------------------------------------------------------------------------

    def _tfvars(self) -> dict[str, Attribute]:
        """Root variable values from files, later files winning (Terraform's order)."""
        files = (
            [self.folder / "terraform.tfvars"]
            if (self.folder / "terraform.tfvars").is_file()
            else []
        )
        files += sorted(self.folder.glob("*.auto.tfvars"))
        files += list(self.options.var_files)
        values: dict[str, Attribute] = {}
        for file in files:
            if not file.is_file():
                raise InfraError(Origin(file), "", "no such .tfvars file")
            values.update(hcl.parse_attributes(file))
        return values

    def variable_value(self, module: Module, block: Block) -> Any:
        name = block.labels[0]
        origin = Origin(block.source.file, block.line, f"variable {name}")
        if module is not self.root:
            if name in module.inputs:
                return module.inputs[name]()
        else:
            if name in self.options.vars:
                return self._typed(self.options.vars[name], block, origin)
            if name in self.tfvars:
                return Evaluator(_constant).attribute(self.tfvars[name])
            if f"TF_VAR_{name}" in self.options.env:
                return self._typed(self.options.env[f"TF_VAR_{name}"], block, origin)
        if "default" in block.attributes:
            return Evaluator(_constant).attribute(block.attributes["default"])
        hint = (
            f"pass --var {name}=VALUE or a --var-file"
            if module is self.root
            else (f"give {module.prefix.rstrip('.')} the input {name}")
        )
        raise InfraError(origin, f"var.{name}", "has no value", hint)

    def _typed(self, text: str, block: Block, origin: Origin) -> Any:
        """A -var value as the variable's type wants it (HCL syntax for lists and maps)."""
        type_attribute = block.attributes.get("type")
        kind = (
            type_attribute.source.quote(type_attribute.expression) if type_attribute else "string"
        )
        if kind == "string":
            return text
        if kind == "number":
            try:
                return float(text) if "." in text else int(text)
            except ValueError:
                raise InfraError(origin, f"var.{block.labels[0]}={text}", "not a number") from None
        if kind == "bool":
            if text not in ("true", "false"):
                raise InfraError(origin, f"var.{block.labels[0]}={text}", "not true or false")
            return text == "true"
        try:
            attribute = hcl.parse_expression(text, self.folder / f"--var {block.labels[0]}")
        except InfraError:
            raise InfraError(origin, f"var.{block.labels[0]}={text}", f"not a {kind}") from None
        return Evaluator(_constant).attribute(attribute)

    # -- pseudo values ------------------------------------------------------------------------

    def region(self) -> str:
        if self._region is None:
            self._region = "us-east-1"
            for provider in self.root.providers:
                attributes = provider.attributes
                if (
                    provider.labels == ["aws"]
                    and "alias" not in attributes
                    and "region" in attributes
                ):
                    value = Evaluator(self.root.lookup).attribute(attributes["region"])
                    self._region = to_string(value)
                    return self._region
            env = self.options.env
            self._region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
        return self._region

    def computed(self, instance: Instance, name: str) -> Any:
        """An attribute AWS computes, as hubbub's (None: the resource's own argument or unknown)."""
        kind, region, account = instance.type, self.region(), self.account_id
        if instance.kind == "data":
            return {
                ("aws_caller_identity", "account_id"): account,
                ("aws_caller_identity", "id"): account,
                ("aws_caller_identity", "arn"): f"arn:aws:iam::{account}:root",
                ("aws_caller_identity", "user_id"): account,
                ("aws_region", "name"): region,
                ("aws_region", "id"): region,
                ("aws_region", "region"): region,
                ("aws_partition", "partition"): "aws",
                ("aws_partition", "id"): "aws",
                ("aws_partition", "dns_suffix"): "amazonaws.com",
            }.get((kind, name)) or (
                "hubbub"
                if kind == "archive_file" and name.startswith("output_") and name != "output_path"
                else None
            )
        if kind == "aws_apigatewayv2_api":
            api_id = (
                self.api_id()
                if instance is self.api_instance
                else api_id_for(instance.text("name"))
            )
            if name == "id":
                return api_id
            scheme = "wss" if instance.text("protocol_type") == "WEBSOCKET" else "https"
            return {
                "api_endpoint": f"{scheme}://{api_id}.execute-api.{region}.amazonaws.com",
                "execution_arn": f"arn:aws:execute-api:{region}:{account}:{api_id}",
                "arn": f"arn:aws:apigateway:{region}::/apis/{api_id}",
            }.get(name)
        if kind == "aws_apigatewayv2_stage":
            stage = instance.text("name")
            if self.stage_instance is instance:
                stage = self.stage()
            api_id = instance.text("api_id")
            return {
                "id": stage,
                "invoke_url": f"wss://{api_id}.execute-api.{region}.amazonaws.com/{stage}",
                "execution_arn": f"arn:aws:execute-api:{region}:{account}:{api_id}/{stage}",
            }.get(name)
        if kind.startswith("aws_apigatewayv2_") and name == "id":
            return instance.address
        if kind == "aws_lambda_function":
            function_name = instance.text("function_name")
            arn = f"arn:aws:lambda:{region}:{account}:function:{function_name}"
            invoke = (
                f"arn:aws:apigateway:{region}:lambda:path/2015-03-31/functions/{arn}/invocations"
            )
            return {
                "id": function_name,
                "arn": arn,
                "invoke_arn": invoke,
                "qualified_arn": f"{arn}:$LATEST",
                "qualified_invoke_arn": invoke.replace(arn, f"{arn}:$LATEST"),
                "version": "$LATEST",
            }.get(name)
        if kind == "aws_lambda_layer_version":
            layer = f"arn:aws:lambda:{region}:{account}:layer:{instance.text('layer_name')}"
            return {
                "arn": f"{layer}:1",
                "id": f"{layer}:1",
                "layer_arn": layer,
                "version": "1",
            }.get(name)
        if kind == "aws_dynamodb_table":
            table = instance.text("name")
            arn = f"arn:aws:dynamodb:{region}:{account}:table/{table}"
            return {
                "id": table,
                "arn": arn,
                "stream_arn": f"{arn}/stream/1970-01-01T00:00:00.000",
            }.get(name)
        if kind.startswith("random_") and name in ("id", "result", "hex", "b64_url", "b64_std"):
            # random_string/random_id/random_pet suffixes: one fixed value, so names are stable.
            return "local"
        if name in ("id", "arn"):
            own = instance.get("name") if instance.has("name") else instance.address
            if name == "id":
                return to_string(own)
            service = kind.split("_")[1] if kind.count("_") >= 2 else kind
            return f"arn:aws:{service}:{region}:{account}:{to_string(own)}"
        return None

    # -- count / for_each ---------------------------------------------------------------------

    def instances(self, module: Module, block: Block, kind: str) -> list[Instance]:
        address = (
            f"{module.prefix}{'data.' if kind == 'data' else ''}{block.labels[0]}.{block.labels[1]}"
        )
        if "count" in block.attributes:
            attribute = block.attributes["count"]
            count = Evaluator(module.lookup).attribute(attribute)
            if count not in (0, 1):
                raise InfraError(
                    Origin(block.source.file, attribute.line, address),
                    f"count = {attribute.source.quote(attribute.expression)}",
                    f"is {count}; hubbub imports a resource once or not at all (count 0 or 1)",
                )
            return [Instance(module, block, kind, {"count": {"index": 0}})] if count else []
        if "for_each" in block.attributes:
            attribute = block.attributes["for_each"]
            items = Evaluator(module.lookup).attribute(attribute)
            pairs = list(items.items()) if isinstance(items, Mapping) else [(x, x) for x in items]
            if len(pairs) > 1:
                raise InfraError(
                    Origin(block.source.file, attribute.line, address),
                    f"for_each = {attribute.source.quote(attribute.expression)}",
                    f"has {len(pairs)} elements; hubbub imports a resource once or not at all",
                )
            return [
                Instance(module, block, kind, {"each": {"key": key, "value": value}})
                for key, value in pairs
            ]
        return [Instance(module, block, kind, {})]

    def all_instances(self, module: Module | None = None) -> list[Instance]:
        """Every resource and data source of the configuration, local modules included."""
        module = module or self.root
        found: list[Instance] = []
        for (kind, type_, _), block in module.blocks.items():
            if kind == "resource" and type_ not in _MODELLED:
                # Only counted in `ignored`: its count/for_each (often over an account's
                # availability zones) is never evaluated.
                found.append(Instance(module, block, kind, {}))
            else:
                found.extend(self.instances(module, block, kind))
        for name, block in module.modules.items():
            if not self._module_present(module, block):
                continue
            child = module.child(name)
            if child is not None:
                found.extend(self.all_instances(child))
        return found

    def remote_modules(self, module: Module | None = None) -> list[str]:
        """The sources of the present modules that are not local folders."""
        module = module or self.root
        sources = []
        for name, block in module.modules.items():
            if self._module_present(module, block):
                child = module.child(name)
                if child is None:
                    source = Evaluator(module.lookup).attribute(block.attributes["source"])
                    sources.append(to_string(source))
                else:
                    sources.extend(self.remote_modules(child))
        return sources

    def _module_present(self, module: Module, block: Block) -> bool:
        if "count" in block.attributes:
            return bool(Evaluator(module.lookup).attribute(block.attributes["count"]))
        if "for_each" in block.attributes:
            return bool(Evaluator(module.lookup).attribute(block.attributes["for_each"]))
        return True

    # -- the API ------------------------------------------------------------------------------

    def api_id(self) -> str:
        if self._api_id is None:
            assert self.api_instance is not None
            self._api_id = api_id_for(self.api_instance.text("name"))
        return self._api_id

    def stage(self) -> str:
        if self._stage is None:
            chosen = self.stage_instance
            self._stage = self.options.stage or (chosen.text("name") if chosen else "") or "dev"
        return self._stage

    def read(self) -> ImportedApi:
        everything = self.everything = self.all_instances()
        resources = [i for i in everything if i.kind == "resource"]
        apis = [i for i in resources if i.type == "aws_apigatewayv2_api"]
        websocket = [i for i in apis if i.text("protocol_type").upper() == "WEBSOCKET"]
        if not websocket:
            raise InfraError(
                Origin(self.path),
                "",
                'no aws_apigatewayv2_api with protocol_type = "WEBSOCKET" in these files',
            )
        if len(websocket) > 1:
            names = ", ".join(i.address for i in websocket)
            raise InfraError(
                websocket[1].origin,
                "",
                f"several WebSocket APIs ({names}); hubbub serves one per config",
                "import the folder or file that defines one of them",
            )
        api_instance = self.api_instance = websocket[0]
        mine = {api_instance.address}
        stages = [i for i in resources if i.type == "aws_apigatewayv2_stage" and self._ours(i)]
        if self.options.stage:
            named = [i for i in stages if i.text("name") == self.options.stage]
            self.stage_instance = named[0] if named else None
        else:
            self.stage_instance = stages[0] if stages else None
        mine.update(i.address for i in stages)
        api = ImportedApi(
            format="terraform",
            source=self.path,
            name=api_instance.text("name"),
            origin=api_instance.origin,
            route_selection_expression=api_instance.text(
                "route_selection_expression", "$request.body.action"
            ),
            stage=self.stage(),
            api_id=self.api_id(),
            region=self.region(),
            account_id=self.account_id,
        )
        if self.stage_instance is not None:
            variables = self.stage_instance.get("stage_variables") or {}
            api.stage_variables = {str(k): to_string(v) for k, v in variables.items()}
        by_address = {i.address: i for i in resources}
        functions = ByName(resources, "aws_lambda_function", "function_name")
        responses = {
            i.text("route_id")
            for i in resources
            if i.type == "aws_apigatewayv2_route_response" and self._ours(i)
        }
        mine.update(
            i.address
            for i in resources
            if i.type == "aws_apigatewayv2_route_response" and self._ours(i)
        )
        used_functions: dict[str, Instance] = {}
        for instance in resources:
            if instance.type == "aws_apigatewayv2_authorizer" and self._ours(instance):
                authorizer = self._authorizer(instance, functions, used_functions)
                api.authorizers[authorizer.name] = authorizer
                mine.add(instance.address)
        for instance in resources:
            if instance.type != "aws_apigatewayv2_route" or not self._ours(instance):
                continue
            route = self._route(instance, by_address, functions, used_functions)
            route = Route(
                key=route.key,
                integration=route.integration,
                origin=route.origin,
                route_response=instance.address in responses,
                authorizer=route.authorizer,
            )
            if any(r.key == route.key for r in api.routes):
                raise InfraError(route.origin, route.key, "route defined twice")
            api.routes.append(route)
            mine.add(instance.address)
            target = instance.text("target")
            mine.add(target.removeprefix("integrations/"))
        layers = ByName(resources, "aws_lambda_layer_version", "layer_name")
        for name, instance in used_functions.items():
            api.functions[name] = self._function(instance, layers, mine)
            mine.add(instance.address)
        for instance in resources:
            if instance.type == "aws_dynamodb_table":
                api.tables.append(self._table(instance))
                mine.add(instance.address)
        for instance in everything:
            if instance.address in mine:
                continue
            if instance.kind == "data":
                if instance.type not in _PSEUDO_DATA:
                    self.ignored[f"data.{instance.type}"] += 1
            elif instance.type == "aws_lambda_function":
                self.ignored["aws_lambda_function without a route"] += 1
            else:
                self.ignored[instance.type] += 1
        for source in self.remote_modules():
            self.ignored[f"module {source}"] += 1
        api.ignored = self.ignored
        return api

    def _ours(self, instance: Instance) -> bool:
        return instance.text("api_id") == self.api_id()

    def _function_of(
        self,
        uri: str,
        instance: Instance,
        field: str,
        functions: Mapping[str, Instance],
        used: dict[str, Instance],
    ) -> str:
        match = re.search(r":function:([^/:]+)", uri)
        if match is None or match.group(1) not in functions:
            name = match.group(1) if match else uri
            raise InfraError(
                instance.origin,
                f"{field} = {uri}",
                f"no aws_lambda_function named {name!r} in these files",
                "hubbub runs the functions the configuration defines",
            )
        used[match.group(1)] = functions[match.group(1)]
        return match.group(1)

    def _authorizer(
        self,
        instance: Instance,
        functions: Mapping[str, Instance],
        used: dict[str, Instance],
    ) -> Authorizer:
        kind = instance.text("authorizer_type").upper()
        sources = tuple(to_string(s) for s in instance.get("identity_sources") or ())
        name = instance.text("name") or instance.address
        if kind == "REQUEST":
            uri = instance.text("authorizer_uri")
            function = self._function_of(uri, instance, "authorizer_uri", functions, used)
            return Authorizer(name, "request", instance.origin, function, sources)
        if kind == "JWT":
            configuration = instance.nested("jwt_configuration")
            if not configuration:
                raise InfraError(instance.origin, "jwt_configuration", "missing")
            audience = configuration[0].get("audience") or []
            return Authorizer(
                name,
                "jwt",
                instance.origin,
                identity_sources=sources,
                issuer=to_string(configuration[0].get("issuer")),
                audience=tuple(to_string(a) for a in audience),
            )
        raise InfraError(instance.origin, f'authorizer_type = "{kind}"', "must be REQUEST or JWT")

    def _route(
        self,
        instance: Instance,
        by_address: Mapping[str, Instance],
        functions: Mapping[str, Instance],
        used: dict[str, Instance],
    ) -> Route:
        key = instance.text("route_key")
        origin = instance.origin
        target = instance.text("target")
        integration_instance = by_address.get(target.removeprefix("integrations/"))
        if not target.startswith("integrations/") or integration_instance is None:
            raise InfraError(
                origin,
                f'target = "{target}"' if target else "target",
                "a route needs a target integrations/<aws_apigatewayv2_integration id>",
            )
        integration = self._integration(integration_instance, functions, used)
        authorizer = None
        authorization = instance.text("authorization_type", "NONE").upper()
        if authorization in ("CUSTOM", "JWT"):
            found = by_address.get(instance.text("authorizer_id"))
            if found is None or found.type != "aws_apigatewayv2_authorizer":
                raise InfraError(
                    origin, "authorizer_id", "does not name an aws_apigatewayv2_authorizer"
                )
            authorizer = found.text("name") or found.address
        elif authorization == "AWS_IAM":
            # As the CloudFormation reader: the route runs, its IAM signature is not checked.
            self.ignored["authorization_type AWS_IAM (not checked locally)"] += 1
        return Route(key=key, integration=integration, origin=origin, authorizer=authorizer)

    def _integration(
        self,
        instance: Instance,
        functions: Mapping[str, Instance],
        used: dict[str, Instance],
    ) -> Integration:
        kind = instance.text("integration_type").upper()
        uri = instance.text("integration_uri")
        service = re.match(r"arn:aws[\w-]*:apigateway:[^:]*:([^:]+):", uri)
        if kind in ("AWS", "AWS_PROXY") and service and service.group(1) != "lambda":
            raise InfraError(
                instance.origin,
                f'integration_uri = "{uri}"',
                f"an AWS service integration ({service.group(1)}) can't run locally;"
                " hubbub runs Lambda functions and HTTP integrations",
                "route it to a Lambda function or an HTTP endpoint, or write the route in a"
                " hubbub.toml without [import]",
            )
        if kind in ("AWS_PROXY", "AWS"):
            function = self._function_of(uri, instance, "integration_uri", functions, used)
            return Integration("lambda", instance.origin, function=function)
        if kind in ("HTTP", "HTTP_PROXY"):
            return Integration("http", instance.origin, url=uri)
        if kind == "MOCK":
            return Integration("mock", instance.origin)
        raise InfraError(
            instance.origin,
            f'integration_type = "{kind}"',
            "must be AWS_PROXY, AWS, HTTP, HTTP_PROXY or MOCK",
        )

    def _code_root(self, instance: Instance, mine: set[str]) -> Path:
        """The folder the handler path is relative to: the archive_file's source."""
        origin = instance.origin
        hint = f'pass --var "{instance.address}.filename=FOLDER" (the folder the zip holds)'
        override = self.options.vars.get(f"{instance.address}.filename")
        if override is not None:
            folder = (self.folder / override).resolve()
            if not folder.is_dir():
                raise InfraError(origin, f"{instance.address}.filename={override}", "not a folder")
            return folder
        if instance.has("image_uri"):
            raise InfraError(
                origin, "image_uri", "hubbub runs handlers from source folders, not images", hint
            )
        if not instance.has("filename"):
            what = "s3_bucket" if instance.has("s3_bucket") else "filename"
            raise InfraError(origin, what, "the code is not in a local file", hint)
        filename = (self.folder / instance.text("filename")).resolve()
        for archive in self.everything:
            if archive.kind != "data" or archive.type != "archive_file":
                continue
            output = (self.folder / archive.text("output_path")).resolve()
            if output != filename:
                continue
            mine.add(archive.address)
            if archive.has("source_dir"):
                return (self.folder / archive.text("source_dir")).resolve()
            if archive.has("source_file"):
                return (self.folder / archive.text("source_file")).resolve().parent
            raise InfraError(
                archive.origin,
                "source",
                "hubbub runs an archive_file made of source_dir or source_file",
                hint,
            )
        raise InfraError(
            origin,
            f"filename = {instance.text('filename')}",
            "no archive_file data source builds this zip, so hubbub can't find its source folder",
            hint,
        )

    def _function(
        self, instance: Instance, layers: Mapping[str, Instance], mine: set[str]
    ) -> Function:
        environment: dict[str, str] = {}
        for block in instance.nested("environment"):
            for key, value in (block.get("variables") or {}).items():
                environment[str(key)] = to_string(value)
        layer_paths: list[Path] = []
        for arn in instance.get("layers") or []:
            match = re.search(r":layer:([^:]+)", to_string(arn))
            layer = layers.get(match.group(1)) if match else None
            if layer is None:
                self.ignored["layer ARN"] += 1
                continue
            layer_paths.append(self._code_root(layer, mine))
            mine.add(layer.address)
        timeout = instance.get("timeout")
        memory = instance.get("memory_size")
        return Function(
            name=instance.text("function_name"),
            handler=instance.text("handler"),
            runtime=instance.text("runtime"),
            code_root=self._code_root(instance, mine),
            origin=instance.origin,
            layers=tuple(layer_paths),
            environment=environment,
            timeout=float(timeout) if timeout is not None else _LAMBDA_DEFAULT_TIMEOUT,
            memory_mb=int(memory) if memory is not None else _LAMBDA_DEFAULT_MEMORY,
        )

    def _table(self, instance: Instance) -> Table:
        origin = instance.origin

        def keys(hash_key: Any, range_key: Any) -> tuple[tuple[str, Literal["HASH", "RANGE"]], ...]:
            schema: list[tuple[str, Literal["HASH", "RANGE"]]] = []
            if hash_key:
                schema.append((to_string(hash_key), "HASH"))
            if range_key:
                schema.append((to_string(range_key), "RANGE"))
            return tuple(schema)

        if not instance.has("hash_key"):
            raise InfraError(origin, "hash_key", "missing")
        attributes: dict[str, Literal["S", "N", "B"]] = {}
        for block in instance.nested("attribute"):
            kind = to_string(block.get("type"))
            if kind not in ("S", "N", "B"):
                raise InfraError(origin, f'type = "{kind}"', "an attribute type is S, N or B")
            attributes[to_string(block.get("name"))] = cast(Literal["S", "N", "B"], kind)

        def index(block: Nested, hash_key: Any) -> Index:
            projection = to_string(block.get("projection_type", "ALL"))
            if projection not in ("ALL", "KEYS_ONLY", "INCLUDE"):
                raise InfraError(origin, f'projection_type = "{projection}"', "unknown")
            return Index(
                name=to_string(block.get("name")),
                key_schema=keys(hash_key, block.get("range_key")),
                projection=cast(Literal["ALL", "KEYS_ONLY", "INCLUDE"], projection),
                non_key_attributes=tuple(
                    to_string(a) for a in block.get("non_key_attributes") or ()
                ),
            )

        table_hash = instance.get("hash_key")
        return Table(
            name=instance.text("name"),
            key_schema=keys(table_hash, instance.get("range_key")),
            attributes=attributes,
            origin=origin,
            global_indexes=tuple(
                index(b, b.get("hash_key")) for b in instance.nested("global_secondary_index")
            ),
            local_indexes=tuple(
                index(b, table_hash) for b in instance.nested("local_secondary_index")
            ),
        )


def _constant(name: str, at: Origin) -> Any:
    """Variable defaults and .tfvars values can't refer to anything."""
    raise InfraError(at, at.what, "a variable's value can't refer to other values")
