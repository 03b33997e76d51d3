"""Loading the staff directory into the database."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, select

from models.errors import InvalidInput, NotFound
from models.staff import StaffDirectory
from models.tables import Department, Staff


@dataclass(frozen=True)
class ImportResult:
    departments_created: int
    departments_updated: int
    staff_created: int
    staff_updated: int


def import_directory(session: Session, *, directory: StaffDirectory) -> ImportResult:
    """Create or update departments and staff by code and username; the caller commits.

    A staff member whose department is neither in the file nor in the database is refused before anything
    is written. Staff absent from the file are left as they are (deactivate them with ``active: false``).
    """
    existing_departments = {d.code: d for d in session.exec(select(Department))}
    known_codes = set(existing_departments) | {d.code for d in directory.departments}
    for index, entry in enumerate(directory.staff):
        if entry.department and entry.department not in known_codes:
            raise InvalidInput(
                f"staff[{index}].department: unknown department '{entry.department}' "
                f"(known: {', '.join(sorted(known_codes)) or 'none'})"
            )
    created_d = updated_d = 0
    for dept in directory.departments:
        row = existing_departments.get(dept.code)
        if row is None:
            row = Department(code=dept.code, name=dept.name, active=dept.active)
            created_d += 1
        else:
            row.name, row.active = dept.name, dept.active
            updated_d += 1
        session.add(row)
        existing_departments[dept.code] = row
    session.flush()
    existing_staff = {s.username: s for s in session.exec(select(Staff))}
    created_s = updated_s = 0
    for entry in directory.staff:
        values = entry.model_dump(exclude={"department"})
        values["department_id"] = existing_departments[entry.department].id if entry.department else None
        member = existing_staff.get(entry.username)
        if member is None:
            member = Staff(**values)
            created_s += 1
        else:
            for key, value in values.items():
                setattr(member, key, value)
            updated_s += 1
        session.add(member)
    session.flush()
    return ImportResult(created_d, updated_d, created_s, updated_s)


def get_staff(session: Session, username: str) -> Staff | None:
    return session.exec(select(Staff).where(Staff.username == username)).first()


def enroll(session: Session, *, username: str, encrypted_secret: str, force: bool = False) -> Staff:
    """Store a new (encrypted) approval-code secret for a staff member; the caller commits.

    Refuses to replace an existing secret unless ``force`` (a lost phone, say).
    """
    member = get_staff(session, username)
    if member is None:
        raise NotFound(f"no staff member '{username}'")
    if member.totp_secret and not force:
        raise InvalidInput(f"{username} is already enrolled; use --force to replace the secret")
    member.totp_secret = encrypted_secret
    member.totp_last_counter = None
    session.add(member)
    session.flush()
    return member
