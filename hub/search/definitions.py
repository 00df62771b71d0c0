"""The search parameters the hub serves: FHIR R4 (4.0.1) codes, types and element paths.

Paths are a small subset of FHIRPath: dotted element names from the resource root; ``x[x]``
stands for a choice element (``effective[x]`` matches effectiveDateTime, effectivePeriod, ...);
``extension:alias`` steps into the extensions with the URL ``EXTENSION_URLS[alias]``.
``targets`` restricts a reference parameter to resource types (``patient`` is ``subject`` where
it points at a Patient).  The table is compact text so it reads like the spec's own tables:

    code  type  path|path  [Target,Target]

Left out: parameters that need full FHIRPath functions the hub does not evaluate (e.g.
Patient ``deceased`` exists()-based, Observation ``combo-*`` over both code and component are
given as plain unions, and ``near`` geo search).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cache

# Extensions a search path may step into (``extension:alias``): the community's own
# parameters, e.g. Composition ``addressee`` (whose primary-care centre a feedback document is for).
EXTENSION_URLS = {
    "feedback-addressee": "https://ygt.example.org/fhir/StructureDefinition/feedback-addressee",
}


@dataclass(frozen=True)
class SearchParam:
    code: str
    type: str  # token|string|date|reference|quantity|uri|number|composite|special
    paths: tuple[str, ...]
    targets: tuple[str, ...] = ()
    components: tuple[str, ...] = ()
    where_system: str | None = None
    # Set when the parameter's paths are exactly those of other parameters of the same type
    # (Observation combo-code is code | component-code): no rows of its own are stored, it
    # is searched through theirs.  Found by _unions, never written in the table.
    union: tuple[str, ...] = ()

    @property
    def stored(self) -> tuple[str, ...]:
        """The parameter codes whose index rows answer this parameter."""
        return self.union or (self.code,)


COMMON: dict[str, SearchParam] = {
    "_id": SearchParam("_id", "special", ("id",)),
    "_lastUpdated": SearchParam("_lastUpdated", "date", ("meta.lastUpdated",)),
    "_tag": SearchParam("_tag", "token", ("meta.tag",)),
    "_profile": SearchParam("_profile", "uri", ("meta.profile",)),
    "_security": SearchParam("_security", "token", ("meta.security",)),
    "_source": SearchParam("_source", "uri", ("meta.source",)),
}

_PATIENT_LIKE = """
identifier token identifier
name string name
family string name.family
given string name.given
birthdate date birthDate
gender token gender
telecom token telecom
phone token telecom @phone
email token telecom @email
address string address
address-city string address.city
address-state string address.state
address-postalcode string address.postalCode
address-country string address.country
address-use token address.use
active token active
"""

_TABLE: dict[str, str] = {
    "Patient": _PATIENT_LIKE
    + """
general-practitioner reference generalPractitioner [Practitioner,Organization,PractitionerRole]
organization reference managingOrganization [Organization]
link reference link.other [Patient,RelatedPerson]
death-date date deceasedDateTime
deceased token deceasedBoolean
language token communication.language
""",
    "Practitioner": _PATIENT_LIKE
    + """
communication token communication
""",
    "PractitionerRole": """
identifier token identifier
active token active
date date period
practitioner reference practitioner [Practitioner]
organization reference organization [Organization]
role token code
specialty token specialty
location reference location [Location]
service reference healthcareService [HealthcareService]
endpoint reference endpoint [Endpoint]
telecom token telecom
phone token telecom @phone
email token telecom @email
""",
    "Organization": """
identifier token identifier
name string name|alias
active token active
type token type
partof reference partOf [Organization]
endpoint reference endpoint [Endpoint]
address string address
address-city string address.city
address-state string address.state
address-postalcode string address.postalCode
""",
    "Location": """
identifier token identifier
name string name|alias
status token status
operational-status token operationalStatus
type token type
partof reference partOf [Location]
organization reference managingOrganization [Organization]
endpoint reference endpoint [Endpoint]
address string address
address-city string address.city
address-state string address.state
address-postalcode string address.postalCode
""",
    "Group": """
identifier token identifier
actual token actual
code token code
type token type
member reference member.entity [Patient,Practitioner,PractitionerRole,Device,Medication,Substance,Group]
managing-entity reference managingEntity [Organization,RelatedPerson,Practitioner,PractitionerRole]
characteristic token characteristic.code
exclude token characteristic.exclude
value token characteristic.value[x]
""",
    "Encounter": """
identifier token identifier
status token status
class token class
type token type
service-type token serviceType
patient reference subject [Patient]
subject reference subject [Patient,Group]
date date period
length quantity length
location reference location.location [Location]
location-period date location.period
service-provider reference serviceProvider [Organization]
participant reference participant.individual [Practitioner,PractitionerRole,RelatedPerson]
practitioner reference participant.individual [Practitioner]
participant-type token participant.type
reason-code token reasonCode
reason-reference reference reasonReference [Condition,Procedure,Observation,ImmunizationRecommendation]
episode-of-care reference episodeOfCare [EpisodeOfCare]
based-on reference basedOn [ServiceRequest]
part-of reference partOf [Encounter]
account reference account [Account]
appointment reference appointment [Appointment]
diagnosis reference diagnosis.condition [Condition,Procedure]
special-arrangement token hospitalization.specialArrangement
""",
    "EpisodeOfCare": """
identifier token identifier
status token status
type token type
patient reference patient [Patient]
organization reference managingOrganization [Organization]
care-manager reference careManager [Practitioner]
condition reference diagnosis.condition [Condition]
incoming-referral reference referralRequest [ServiceRequest]
date date period
""",
    "ServiceRequest": """
identifier token identifier
status token status
intent token intent
category token category
priority token priority
code token code
patient reference subject [Patient]
subject reference subject [Patient,Group,Location,Device]
encounter reference encounter [Encounter]
requester reference requester [Practitioner,Organization,Patient,PractitionerRole,RelatedPerson,Device]
performer reference performer [Practitioner,PractitionerRole,Organization,CareTeam,HealthcareService,Patient,Device,RelatedPerson]
performer-type token performerType
authored date authoredOn
occurrence date occurrence[x]
based-on reference basedOn [CarePlan,ServiceRequest,MedicationRequest]
replaces reference replaces [ServiceRequest]
requisition token requisition
specimen reference specimen [Specimen]
body-site token bodySite
instantiates-canonical reference instantiatesCanonical [PlanDefinition,ActivityDefinition]
instantiates-uri uri instantiatesUri
""",
    "DiagnosticReport": """
identifier token identifier
status token status
category token category
code token code
patient reference subject [Patient]
subject reference subject [Patient,Group,Device,Location]
encounter reference encounter [Encounter]
date date effective[x]
issued date issued
performer reference performer [Practitioner,Organization,CareTeam,PractitionerRole]
results-interpreter reference resultsInterpreter [Practitioner,Organization,CareTeam,PractitionerRole]
result reference result [Observation]
based-on reference basedOn [CarePlan,ImmunizationRecommendation,MedicationRequest,NutritionOrder,ServiceRequest]
specimen reference specimen [Specimen]
conclusion token conclusionCode
media reference media.link [Media]
""",
    "Observation": """
identifier token identifier
status token status
category token category
code token code
patient reference subject [Patient]
subject reference subject [Patient,Group,Device,Location]
focus reference focus
encounter reference encounter [Encounter,EpisodeOfCare]
date date effective[x]
performer reference performer [Practitioner,Organization,Patient,PractitionerRole,CareTeam,RelatedPerson]
based-on reference basedOn [CarePlan,DeviceRequest,ImmunizationRecommendation,MedicationRequest,NutritionOrder,ServiceRequest]
part-of reference partOf [MedicationAdministration,MedicationDispense,MedicationStatement,Procedure,Immunization,ImagingStudy]
derived-from reference derivedFrom [DocumentReference,ImagingStudy,Media,QuestionnaireResponse,Observation,MolecularSequence]
has-member reference hasMember [Observation,QuestionnaireResponse,MolecularSequence]
specimen reference specimen [Specimen]
device reference device [Device,DeviceMetric]
method token method
data-absent-reason token dataAbsentReason
value-quantity quantity valueQuantity
value-concept token valueCodeableConcept
value-string string valueString
value-date date valueDateTime|valuePeriod
component-code token component.code
component-value-quantity quantity component.valueQuantity
component-value-concept token component.valueCodeableConcept
component-data-absent-reason token component.dataAbsentReason
combo-code token code|component.code
combo-value-quantity quantity valueQuantity|component.valueQuantity
combo-value-concept token valueCodeableConcept|component.valueCodeableConcept
combo-data-absent-reason token dataAbsentReason|component.dataAbsentReason
code-value-quantity composite = code,value-quantity
code-value-concept composite = code,value-concept
code-value-string composite = code,value-string
code-value-date composite = code,value-date
component-code-value-quantity composite = component-code,component-value-quantity
component-code-value-concept composite = component-code,component-value-concept
combo-code-value-quantity composite = combo-code,combo-value-quantity
combo-code-value-concept composite = combo-code,combo-value-concept
""",
    "Specimen": """
identifier token identifier
accession token accessionIdentifier
status token status
type token type
patient reference subject [Patient]
subject reference subject [Patient,Group,Device,Substance,Location]
parent reference parent [Specimen]
collected date collection.collected[x]
collector reference collection.collector [Practitioner,PractitionerRole]
bodysite token collection.bodySite
container token container.type
container-id token container.identifier
""",
    "Condition": """
identifier token identifier
clinical-status token clinicalStatus
verification-status token verificationStatus
category token category
severity token severity
code token code
body-site token bodySite
patient reference subject [Patient]
subject reference subject [Patient,Group]
encounter reference encounter [Encounter]
onset-date date onset[x]
abatement-date date abatement[x]
recorded-date date recordedDate
asserter reference asserter [Practitioner,Patient,RelatedPerson,PractitionerRole]
evidence token evidence.code
evidence-detail reference evidence.detail
stage token stage.summary
""",
    "Procedure": """
identifier token identifier
status token status
category token category
code token code
patient reference subject [Patient]
subject reference subject [Patient,Group]
encounter reference encounter [Encounter]
date date performed[x]
performer reference performer.actor [Practitioner,Organization,Patient,PractitionerRole,RelatedPerson,Device]
location reference location [Location]
based-on reference basedOn [CarePlan,ServiceRequest]
part-of reference partOf [Procedure,Observation,MedicationAdministration]
reason-code token reasonCode
reason-reference reference reasonReference [Condition,Observation,Procedure,DiagnosticReport,DocumentReference]
""",
    "MedicationStatement": """
identifier token identifier
status token status
category token category
code token medicationCodeableConcept
medication reference medicationReference [Medication]
patient reference subject [Patient]
subject reference subject [Patient,Group]
context reference context [Encounter,EpisodeOfCare]
effective date effective[x]
source reference informationSource [Practitioner,Organization,Patient,PractitionerRole,RelatedPerson]
part-of reference partOf [MedicationAdministration,MedicationDispense,MedicationStatement,Procedure,Observation]
""",
    "CarePlan": """
identifier token identifier
status token status
intent token intent
category token category
patient reference subject [Patient]
subject reference subject [Patient,Group]
encounter reference encounter [Encounter]
date date period
care-team reference careTeam [CareTeam]
condition reference addresses [Condition]
goal reference goal [Goal]
based-on reference basedOn [CarePlan]
part-of reference partOf [CarePlan]
replaces reference replaces [CarePlan]
performer reference activity.detail.performer
activity-code token activity.detail.code
activity-date date activity.detail.scheduled[x]
activity-reference reference activity.reference
instantiates-uri uri instantiatesUri
""",
    "Composition": """
identifier token identifier
status token status
type token type
category token category
patient reference subject [Patient]
subject reference subject
encounter reference encounter [Encounter]
date date date
author reference author [Practitioner,Device,Patient,RelatedPerson,PractitionerRole,Organization]
attester reference attester.party [Patient,Practitioner,PractitionerRole,RelatedPerson,Organization]
title string title
confidentiality token confidentiality
section token section.code
entry reference section.entry
context token event.code
period date event.period
related-id token relatesTo.targetIdentifier
related-ref reference relatesTo.targetReference [Composition]
addressee reference extension:feedback-addressee.valueReference [Organization]
""",
    "DocumentReference": """
identifier token identifier|masterIdentifier
status token status
type token type
category token category
patient reference subject [Patient]
subject reference subject [Patient,Practitioner,Group,Device]
date date date
author reference author [Practitioner,Organization,Device,Patient,PractitionerRole,RelatedPerson]
custodian reference custodian [Organization]
authenticator reference authenticator [Practitioner,Organization,PractitionerRole]
description string description
encounter reference context.encounter [Encounter,EpisodeOfCare]
period date context.period
event token context.event
facility token context.facilityType
setting token context.practiceSetting
related reference context.related
relatesto reference relatesTo.target [DocumentReference]
contenttype token content.attachment.contentType
format token content.format
language token content.attachment.language
location uri content.attachment.url
security-label token securityLabel
doc-status token docStatus
""",
    "Bundle": """
identifier token identifier
type token type
timestamp date timestamp
""",
    "List": """
identifier token identifier
status token status
code token code
patient reference subject [Patient]
subject reference subject [Patient,Group,Device,Location]
encounter reference encounter [Encounter]
date date date
source reference source [Practitioner,Patient,Device,PractitionerRole]
item reference entry.item
empty-reason token emptyReason
title string title
notes string note.text
""",
    "Task": """
identifier token identifier
status token status
business-status token businessStatus
intent token intent
priority token priority
code token code
patient reference for [Patient]
subject reference for
focus reference focus
encounter reference encounter [Encounter]
based-on reference basedOn
part-of reference partOf [Task]
group-identifier token groupIdentifier
authored-on date authoredOn
modified date lastModified
period date executionPeriod
requester reference requester [Device,Organization,Patient,Practitioner,PractitionerRole,RelatedPerson]
owner reference owner [Practitioner,Organization,CareTeam,HealthcareService,Patient,Device,PractitionerRole,RelatedPerson]
performer token performerType
""",
    "Provenance": """
target reference target
patient reference target [Patient]
recorded date recorded
when date occurred[x]
agent reference agent.who [Practitioner,Organization,Device,Patient,PractitionerRole,RelatedPerson]
agent-type token agent.type
agent-role token agent.role
entity reference entity.what
location reference location [Location]
signature-type token signature.type
""",
    "DetectedIssue": """
patient reference patient [Patient]
identified date identified[x]
code token code
implicated reference implicated
identifier token identifier
""",
    "AuditEvent": """
action token action
type token type
subtype token subtype
outcome token outcome
date date recorded
agent reference agent.who [Practitioner,Organization,Device,Patient,PractitionerRole,RelatedPerson]
agent-name string agent.name
agent-role token agent.role
altid token agent.altId
policy uri agent.policy
address string agent.network.address
entity reference entity.what
entity-name string entity.name
entity-role token entity.role
entity-type token entity.type
patient reference agent.who|entity.what [Patient]
site token source.site
source reference source.observer
purpose token purposeOfEvent
""",
    "Subscription": """
status token status
criteria string criteria
type token channel.type
url uri channel.endpoint
payload token channel.payload
contact token contact
""",
    "Endpoint": """
identifier token identifier
name string name
status token status
connection-type token connectionType
organization reference managingOrganization [Organization]
payload-type token payloadType
address uri address
""",
    "NamingSystem": """
name string name
status token status
kind token kind
type token type
date date date
publisher string publisher
responsible string responsible
value string uniqueId.value
id-type token uniqueId.type
period date uniqueId.period
jurisdiction token jurisdiction
""",
}

_CONFORMANCE = """
url uri url
version token version
name string name
title string title
status token status
date date date
publisher string publisher
description string description
jurisdiction token jurisdiction
context-type token useContext.code
identifier token identifier
"""

_TABLE["CodeSystem"] = (
    _CONFORMANCE
    + """
code token concept.code
content-mode token content
supplements reference supplements [CodeSystem]
system uri url
language token concept.designation.language
"""
)
_TABLE["ValueSet"] = (
    _CONFORMANCE
    + """
code token expansion.contains.code|compose.include.concept.code
reference uri compose.include.system
expansion uri expansion.identifier
"""
)
_TABLE["ConceptMap"] = (
    _CONFORMANCE
    + """
source reference source[x] [ValueSet]
source-uri reference sourceUri [ValueSet]
target reference target[x] [ValueSet]
target-uri reference targetUri [ValueSet]
source-system uri group.source
target-system uri group.target
source-code token group.element.code
target-code token group.element.target.code
product token group.element.target.dependsOn.property
other uri group.unmapped.url
"""
)
_TABLE["StructureDefinition"] = (
    _CONFORMANCE
    + """
kind token kind
type uri type
base uri baseDefinition
derivation token derivation
abstract token abstract
experimental token experimental
keyword token keyword
path token snapshot.element.path|differential.element.path
ext-context token context.type
"""
)


def _parse_line(line: str) -> SearchParam:
    parts = line.split()
    code, kind = parts[0], parts[1]
    if kind == "composite":
        return SearchParam(code, kind, (), components=tuple(parts[3].split(",")))
    paths = tuple(parts[2].split("|"))
    targets: tuple[str, ...] = ()
    where: str | None = None
    for extra in parts[3:]:
        if extra.startswith("["):
            targets = tuple(extra.strip("[]").split(","))
        elif extra.startswith("@"):
            where = extra[1:]
    return SearchParam(code, kind, paths, targets, where_system=where)


@cache
def _registry() -> dict[str, dict[str, SearchParam]]:
    registry: dict[str, dict[str, SearchParam]] = {}
    for res_type, table in _TABLE.items():
        params = {}
        for raw in table.strip().splitlines():
            if raw.strip():
                param = _parse_line(raw)
                params[param.code] = param
        registry[res_type] = _unions(params)
    return registry


def _unions(params: dict[str, SearchParam]) -> dict[str, SearchParam]:
    """Mark each parameter whose every path is the single path of another parameter of the
    same type, targets and system (see SearchParam.union)."""
    everything = {**COMMON, **params}
    out = dict(params)
    for param in params.values():
        if param.type == "composite" or len(param.paths) < 2:
            continue
        parts = []
        for path in param.paths:
            alone = next(
                (
                    other.code
                    for other in everything.values()
                    if other.code != param.code
                    and other.paths == (path,)
                    and (other.type, other.targets, other.where_system)
                    == (param.type, param.targets, param.where_system)
                ),
                None,
            )
            if alone is None:
                break
            parts.append(alone)
        else:
            out[param.code] = replace(param, union=tuple(parts))
    return out


PARAMS: dict[str, dict[str, SearchParam]] = _registry()


def type_params(res_type: str) -> dict[str, SearchParam]:
    """The type's own parameters (without the common ones)."""
    return PARAMS.get(res_type, {})


@cache
def params_for(res_type: str) -> dict[str, SearchParam]:
    return {**COMMON, **type_params(res_type)}


def get_param(res_type: str | None, code: str) -> SearchParam | None:
    if res_type is None:
        return COMMON.get(code)
    return params_for(res_type).get(code)
