"""The staff directory file (YAML) that ``claimflow staff import`` reads, validated with pydantic.

```yaml
departments:
  - {code: claims-motor, name: Motor claims}
  - {code: complaints, name: Customer complaints (independent)}
staff:
  - username: li.wei
    name: Li Wei
    role: handler            # handler | supervisor | manager
    department: claims-motor
    skills: [motor, health]
    languages: [zh-CN, en]
    capacity: 20
```
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from models.enums import StaffRole

_CODE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


class DepartmentEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str
    name: str = Field(min_length=1, max_length=200)
    active: bool = True

    @field_validator("code")
    @classmethod
    def _code_shape(cls, value: str) -> str:
        if not _CODE.match(value):
            raise ValueError("must be lower-case letters, digits, '.', '_' or '-'")
        return value


class StaffEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str
    name: str = Field(min_length=1, max_length=200)
    email: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    role: StaffRole
    department: str | None = None
    skills: list[str] = Field(default_factory=list)
    languages: list[str] = Field(default_factory=lambda: ["zh-CN"])
    active: bool = True
    capacity: int = Field(default=20, ge=0, le=1000)

    @field_validator("username")
    @classmethod
    def _username_shape(cls, value: str) -> str:
        if not _CODE.match(value):
            raise ValueError("must be lower-case letters, digits, '.', '_' or '-'")
        return value


class StaffDirectory(BaseModel):
    """A whole directory file: departments first, then the staff who belong to them."""

    model_config = ConfigDict(extra="forbid")

    departments: list[DepartmentEntry] = Field(default_factory=list)
    staff: list[StaffEntry] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> StaffDirectory:
        codes = [d.code for d in self.departments]
        for code in codes:
            if codes.count(code) > 1:
                raise ValueError(f"department '{code}' is listed twice")
        names = [s.username for s in self.staff]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"staff member '{name}' is listed twice")
        return self
