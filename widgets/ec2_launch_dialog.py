"""The EC2 launch dialog: region, instance type (each with its GPU and $/h while choosing),
spot or on-demand, name, key pair, security groups, subnet, instance profile and root volume,
prefilled from runctl.toml. Dry run shows the exact RunInstances request; Launch plans it the
same way and hands the plan back; nothing is created here.

The dialog knows no cloud: the app passes in blocking callables (run here in thread workers)
that list the types of a region, read a spot price and plan a launch, and gets the plan back
through `dismiss`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.timer import Timer
from textual.widgets import Button, Checkbox, Input, Label, OptionList, Select, Static
from textual.widgets.option_list import Option

SPOT_PRICE_DELAY_S = 0.3  # while the cursor moves through the types, ask once it rests
NO_REGION = "(profile's region)"


def rate(usd_per_hour: float | None) -> str:
    """$/h as instance prices are quoted: '$1.006/h', '$0.0104/h'."""
    if usd_per_hour is None:
        return "$?/h"
    if 0 < usd_per_hour < 0.0001:
        return "<$0.0001/h"
    return f"${usd_per_hour:,.3f}/h" if usd_per_hour >= 0.1 else f"${usd_per_hour:.4f}/h"


@dataclass(frozen=True, slots=True)
class TypeChoice:
    """One row of the type list."""

    instance_type: str
    gpu: str | None  # "A10G x1, 22 GiB"; None: no GPU
    price_per_hour: float | None  # on-demand

    def prompt(self, loaded: bool = True) -> str:
        gpu = self.gpu or ("no GPU" if loaded else "…")
        return f"{self.instance_type:<15} {gpu:<26} {rate(self.price_per_hour):>11}"


@dataclass(frozen=True, slots=True)
class TypeList:
    """What `load_types(region)` answers: the regions to offer, the region these rows are
    for, the rows, and why GPU facts are missing (None when they are all there)."""

    regions: list[str]
    region: str
    choices: list[TypeChoice]
    problem: str | None = None


@dataclass(slots=True)
class Ec2LaunchRequest:
    """What the dialog asks for (the fields of the form, checked)."""

    instance_type: str
    region: str | None = None
    spot: bool = False
    spot_max_price: float | None = None
    name: str = ""
    key_name: str = ""
    security_group_ids: list[str] = field(default_factory=list)
    subnet_id: str = ""
    instance_profile: str = ""
    root_volume_gb: int = 100


@dataclass(slots=True)
class Ec2Launch:
    """The dialog's answer: the request and the plan `plan(request)` made of it."""

    request: Ec2LaunchRequest
    plan: Any


class Ec2LaunchDialog(ModalScreen[Ec2Launch | None]):
    DEFAULT_CSS = """
    Ec2LaunchDialog { align: center middle; }
    Ec2LaunchDialog > Vertical {
        width: 118; max-width: 98%; height: 34; max-height: 100%;
        border: thick $warning; background: $surface; padding: 0 1;
    }
    Ec2LaunchDialog #ec2-title { text-style: bold; margin-bottom: 1; }
    Ec2LaunchDialog #ec2-columns { height: auto; }
    Ec2LaunchDialog #ec2-left { width: 60; height: auto; }
    Ec2LaunchDialog #ec2-right { width: 1fr; height: auto; padding-left: 2; }
    Ec2LaunchDialog .ec2-row { height: 1; margin-bottom: 1; }
    Ec2LaunchDialog .ec2-row Label { width: 18; color: $text-muted; }
    Ec2LaunchDialog .ec2-row Input, Ec2LaunchDialog .ec2-row Select { width: 1fr; }
    Ec2LaunchDialog #ec2-types-header { color: $text-muted; text-style: bold; }
    Ec2LaunchDialog #ec2-types { height: 11; }
    Ec2LaunchDialog #ec2-spot-now { color: $text-muted; height: 1; }
    Ec2LaunchDialog #ec2-summary { text-style: bold; margin-top: 1; height: auto; }
    Ec2LaunchDialog #ec2-output { height: 1fr; margin-top: 1; border: round $primary 40%; }
    Ec2LaunchDialog #ec2-result.-problem { color: $error; text-style: bold; }
    Ec2LaunchDialog #ec2-buttons { height: 1; align: right middle; }
    Ec2LaunchDialog #ec2-buttons Button { margin-left: 2; }
    """

    AUTO_FOCUS = "#ec2-types"  # set as the dialog is composed (`focus()` in on_mount is deferred)

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="ec2_launch.cancel"),
        # As in the run-launch dialog: not ctrl+d, which the inputs take.
        Binding("ctrl+t", "dry_run", "Dry run", id="ec2_launch.dry_run", priority=True),
    ]

    def __init__(
        self,
        defaults: Ec2LaunchRequest,
        regions: Sequence[str],
        instance_types: Sequence[str],
        load_types: Callable[[str | None], TypeList],
        spot_price: Callable[[str, str], float | None],
        plan: Callable[[Ec2LaunchRequest], tuple[Any, str]],
        project: str = "",
    ) -> None:
        """`load_types(region)`, `spot_price(type, region)` and `plan(request)` block (they
        ask AWS) and run in workers; `plan` returns (plan, its description) or raises an
        exception whose message says what is wrong."""
        super().__init__()
        self.defaults = defaults
        self.regions = list(regions)
        self.aws_region: str | None = defaults.region or (self.regions[0] if self.regions else None)
        self.choices = [TypeChoice(t, None, None) for t in instance_types]
        self.loaded = False
        self.instance_type = defaults.instance_type
        self.load_types = load_types
        self.get_spot_price = spot_price
        self.make_plan = plan
        self.project = project
        self.spot_now: dict[tuple[str, str], float | None] = {}
        self.busy = False
        self._spot_timer: Timer | None = None

    # -- layout ----------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        d = self.defaults
        with Vertical():
            yield Label(f"Launch an EC2 instance — project {self.project}", id="ec2-title")
            with Horizontal(id="ec2-columns"):
                with Vertical(id="ec2-left"):
                    with Horizontal(classes="ec2-row"):
                        yield Label("Region")
                        yield Select(
                            [(r, r) for r in self.regions],
                            value=self.aws_region or Select.BLANK,
                            allow_blank=not self.regions,
                            prompt=NO_REGION,
                            compact=True,
                            id="region",
                        )
                    with Horizontal(classes="ec2-row"):
                        yield Label("Filter types")
                        yield Input(placeholder="g5, A10G, H100…", compact=True, id="type-filter")
                    yield Static(
                        f"{'Type':<15} {'GPU (per instance)':<26} {'on-demand':>11}",
                        id="ec2-types-header",
                    )
                    # Filled in on mount: built with options, it would highlight the first.
                    yield OptionList(id="ec2-types")
                with Vertical(id="ec2-right"):
                    yield from self._field("Name", "name", d.name, "runctl-<project>")
                    yield from self._field("Key pair", "key-name", d.key_name, "my-key")
                    yield from self._field(
                        "Security groups",
                        "security-groups",
                        ", ".join(d.security_group_ids),
                        "sg-…, sg-… (empty: default)",
                    )
                    yield from self._field("Subnet", "subnet", d.subnet_id, "subnet-…")
                    yield from self._field(
                        "Instance profile", "instance-profile", d.instance_profile, "for SSM / S3"
                    )
                    yield from self._field("Root volume GB", "root-gb", str(d.root_volume_gb), "")
                    with Horizontal(classes="ec2-row"):
                        yield Checkbox("Spot", d.spot, compact=True, id="spot")
                    max_price = "" if d.spot_max_price is None else f"{d.spot_max_price:g}"
                    yield from self._field(
                        "Max spot $/h", "spot-max", max_price, "empty: up to on-demand"
                    )
                    yield Static("", id="ec2-spot-now")
            yield Static("", id="ec2-summary", markup=False)
            with VerticalScroll(id="ec2-output"):
                yield Static(
                    "Dry run shows the exact RunInstances request; nothing is created until "
                    "Launch.",
                    id="ec2-result",
                    markup=False,
                )
            with Horizontal(id="ec2-buttons"):
                yield Button("Dry run (ctrl+t)", compact=True, id="dry-run")
                yield Button("Launch", variant="warning", compact=True, id="launch")
                yield Button("Cancel (esc)", compact=True, id="cancel")

    def _field(self, label: str, field_id: str, value: str, placeholder: str) -> ComposeResult:
        with Horizontal(classes="ec2-row"):
            yield Label(label)
            yield Input(value, placeholder=placeholder, compact=True, id=field_id)

    def on_mount(self) -> None:
        self.query_one("#spot-max", Input).disabled = not self.defaults.spot
        self._show_options()
        self._summarize()
        self.fetch_types(self.aws_region)

    # -- the type list ---------------------------------------------------------------------------
    def _options(self, text: str) -> list[Option]:
        wanted = text.strip().lower()
        return [
            Option(choice.prompt(self.loaded), id=choice.instance_type)
            for choice in self.choices
            if not wanted or wanted in choice.instance_type or wanted in (choice.gpu or "").lower()
        ]

    def _show_options(self) -> None:
        types = self.query_one("#ec2-types", OptionList)
        types.set_options(self._options(self.query_one("#type-filter", Input).value))
        self._highlight(self.instance_type)

    def _highlight(self, instance_type: str) -> None:
        """Keep the chosen type highlighted; when the filter hides it, the first match."""
        types = self.query_one("#ec2-types", OptionList)
        try:
            types.highlighted = types.get_option_index(instance_type)
        except LookupError:
            if types.option_count:
                types.highlighted = 0

    @work(
        thread=True,
        exclusive=True,
        group="ec2-types",
        exit_on_error=False,
        description="Reading instance types",
    )
    def fetch_types(self, region: str | None) -> None:
        try:
            found = self.load_types(region)
        except Exception as err:  # shown in the dialog, which stays usable
            self.app.call_from_thread(self._show, f"Could not read the instance types: {err}", True)
            return
        self.app.call_from_thread(self._types_loaded, found)

    def _types_loaded(self, found: TypeList) -> None:
        if not self.is_attached:
            return  # closed while AWS answered
        self.choices = found.choices
        self.loaded = True
        if found.regions and found.regions != self.regions:
            self.regions = list(found.regions)
            region_select = self.query_one("#region", Select)
            with self.prevent(Select.Changed):
                region_select.set_options([(r, r) for r in self.regions])
                region_select.value = found.region
        self.aws_region = found.region
        self._show_options()
        self._summarize()
        if found.problem:
            self._show(f"GPU facts are missing: {found.problem}", True)

    @on(Input.Changed, "#type-filter")
    def filter_types(self) -> None:
        self._show_options()

    @on(OptionList.OptionHighlighted, "#ec2-types")
    def type_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if event.option.id:
            self.instance_type = event.option.id
            self._summarize()
            self._ask_spot_price_soon()

    @on(Select.Changed, "#region")
    def region_changed(self, event: Select.Changed) -> None:
        if event.value is Select.BLANK or event.value == self.aws_region:
            return
        self.aws_region = str(event.value)
        self.loaded = False
        self._show_options()
        self._summarize()
        self.fetch_types(self.aws_region)
        self._ask_spot_price_soon()

    # -- spot ------------------------------------------------------------------------------------
    @on(Checkbox.Changed, "#spot")
    def spot_toggled(self, event: Checkbox.Changed) -> None:
        self.query_one("#spot-max", Input).disabled = not event.value
        self._summarize()
        self._ask_spot_price_soon()

    def _ask_spot_price_soon(self) -> None:
        if self._spot_timer is not None:
            self._spot_timer.stop()
        if self.query_one("#spot", Checkbox).value and self.aws_region:
            self._spot_timer = self.set_timer(SPOT_PRICE_DELAY_S, self._ask_spot_price)

    def _ask_spot_price(self) -> None:
        key = (self.aws_region or "", self.instance_type)
        if key not in self.spot_now:
            self.fetch_spot_price(*key)
        else:
            self._summarize()

    @work(
        thread=True,
        exclusive=True,
        group="ec2-spot-price",
        exit_on_error=False,
        description="Reading the spot price",
    )
    def fetch_spot_price(self, region: str, instance_type: str) -> None:
        try:
            price = self.get_spot_price(instance_type, region)
        except Exception as err:
            self.app.call_from_thread(self._show, f"Could not read the spot price: {err}", True)
            return
        self.app.call_from_thread(self._spot_price_read, region, instance_type, price)

    def _spot_price_read(self, region: str, instance_type: str, price: float | None) -> None:
        self.spot_now[(region, instance_type)] = price
        if self.is_attached:
            self._summarize()

    # -- what Launch would do --------------------------------------------------------------------
    def _choice(self) -> TypeChoice | None:
        return next((c for c in self.choices if c.instance_type == self.instance_type), None)

    def _summarize(self) -> None:
        choice = self._choice()
        gpu = (choice.gpu or "no GPU") if choice and self.loaded else "GPU …"
        on_demand = choice.price_per_hour if choice else None
        region = self.aws_region or NO_REGION
        spot_now = self.query_one("#ec2-spot-now", Static)
        if self.query_one("#spot", Checkbox).value:
            known = (self.aws_region or "", self.instance_type) in self.spot_now
            price = self.spot_now.get((self.aws_region or "", self.instance_type))
            now = rate(price) if known and price is not None else ("unknown" if known else "…")
            spot_now.update(f"spot now: {now} (on-demand {rate(on_demand)})")
            market = f"spot (now {now})"
        else:
            spot_now.update("")
            market = f"on-demand {rate(on_demand)}"
        self.query_one("#ec2-summary", Static).update(
            f"Launch: {self.instance_type} in {region} — {gpu} — {market}"
        )

    def _show(self, text: str, problem: bool = False) -> None:
        if not self.is_attached:
            return
        result = self.query_one("#ec2-result", Static)
        result.update(text)
        result.set_class(problem, "-problem")

    def _request(self) -> Ec2LaunchRequest | None:
        """The form as a request, or None after showing what is wrong with it."""

        def text(field_id: str) -> str:
            return self.query_one(f"#{field_id}", Input).value.strip()

        problems = []
        if self._choice() is None:
            problems.append(f"pick an instance type ({self.instance_type!r} is not in the list)")
        try:
            root_gb = int(text("root-gb"))
            if root_gb < 8:
                raise ValueError
        except ValueError:
            problems.append("root volume: a whole number of GB, at least 8")
            root_gb = 0
        spot = self.query_one("#spot", Checkbox).value
        max_price = None
        if spot and text("spot-max"):
            try:
                max_price = float(text("spot-max").removeprefix("$"))
                if max_price <= 0:
                    raise ValueError
            except ValueError:
                problems.append("max spot price: a positive number of $/h, or empty")
        if problems:
            self._show("Cannot launch:\n" + "\n".join(f"  • {p}" for p in problems), True)
            return None
        groups = [g.strip() for g in text("security-groups").replace(",", " ").split()]
        return Ec2LaunchRequest(
            instance_type=self.instance_type,
            region=self.aws_region,
            spot=spot,
            spot_max_price=max_price,
            name=text("name"),
            key_name=text("key-name"),
            security_group_ids=[g for g in groups if g],
            subnet_id=text("subnet"),
            instance_profile=text("instance-profile"),
            root_volume_gb=root_gb,
        )

    # -- buttons ---------------------------------------------------------------------------------
    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#dry-run")
    def action_dry_run(self) -> None:
        self._plan(launch=False)

    @on(Input.Submitted)
    def field_submitted(self, event: Input.Submitted) -> None:
        """Enter in the filter goes to the list; in a field it is a dry run, never a launch."""
        if event.input.id == "type-filter":
            self.query_one("#ec2-types", OptionList).focus()
        else:
            self.action_dry_run()

    @on(Button.Pressed, "#launch")
    def launch_pressed(self) -> None:
        self._plan(launch=True)

    def _plan(self, launch: bool) -> None:
        if self.busy:
            return
        request = self._request()
        if request is None:
            return
        self._set_busy(True)
        self._show("Planning the launch (reading the AMI and its root device)…")
        self.run_plan(request, launch)

    def _set_busy(self, busy: bool) -> None:
        self.busy = busy
        for button_id in ("#dry-run", "#launch"):
            self.query_one(button_id, Button).disabled = busy

    @work(
        thread=True,
        exclusive=True,
        group="ec2-plan",
        exit_on_error=False,
        description="Planning the EC2 launch",
    )
    def run_plan(self, request: Ec2LaunchRequest, launch: bool) -> None:
        try:
            plan, description = self.make_plan(request)
        except Exception as err:  # a plan that fails says why; the dialog stays open
            self.app.call_from_thread(self._planned, request, None, f"Cannot launch: {err}", False)
            return
        self.app.call_from_thread(self._planned, request, plan, description, launch)

    def _planned(self, request: Ec2LaunchRequest, plan: Any, description: str, launch: bool):
        if not self.is_attached:
            return  # cancelled while planning: nothing is launched
        self._set_busy(False)
        if plan is None:
            self._show(description, True)
        elif launch:
            self.dismiss(Ec2Launch(request, plan))
        else:
            self._show("Dry run — nothing created. RunInstances request:\n" + description)
