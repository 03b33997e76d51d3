from datetime import date

import pytest

from models.masking import mask_birth_date, mask_email, mask_id_number, mask_name, mask_phone


@pytest.mark.parametrize(
    ("function", "value", "masked"),
    [
        pytest.param(mask_name, "张三丰", "张**", id="chinese-name-keeps-surname"),
        pytest.param(mask_name, "Li Wei", "L* W**", id="latin-name-keeps-initials"),
        pytest.param(mask_name, "王", "王*", id="one-character-name-still-masked"),
        pytest.param(mask_phone, "13812345678", "138****5678", id="mobile"),
        pytest.param(mask_phone, "+86 138-1234-5678", "861******5678", id="formatted-phone"),
        pytest.param(mask_phone, "12345", "*****", id="short-number-fully-masked"),
        pytest.param(mask_email, "li.wei@example.com", "l*****@example.com", id="email"),
        pytest.param(mask_email, "nonsense", "********", id="not-an-address"),
        pytest.param(mask_id_number, "110101199001011234", "1101**********1234", id="resident-id"),
        pytest.param(mask_id_number, "A1234", "*****", id="short-id-fully-masked"),
        pytest.param(mask_birth_date, date(1950, 3, 2), "1950-**-**", id="birth-date-keeps-year"),
        pytest.param(mask_name, None, "", id="absent-is-empty"),
    ],
)
def test_masks(function, value, masked) -> None:
    assert function(value) == masked
