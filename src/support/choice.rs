//! Settings that name one of a few values (`log.format: json`, `key.source: env`): matched
//! without regard to ASCII case, refused with a message that lists the accepted names.

/// The value `choices` pairs with `value`, compared without regard to ASCII case; otherwise
/// `<setting> "<value>" is not one of: <names>`.
pub fn one_of<T: Copy>(setting: &str, value: &str, choices: &[(&str, T)]) -> Result<T, String> {
    choices
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(value))
        .map(|&(_, choice)| choice)
        .ok_or_else(|| {
            let names: Vec<&str> = choices.iter().map(|&(name, _)| name).collect();
            format!("{setting} {value:?} is not one of: {}", names.join(", "))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHOICES: &[(&str, u8)] = &[("text", 1), ("json", 2)];

    #[test]
    fn names_match_without_regard_to_case_and_others_are_listed() {
        assert_eq!(one_of("log.format", "JSON", CHOICES), Ok(2));
        assert_eq!(one_of("log.format", "text", CHOICES), Ok(1));
        assert_eq!(
            one_of("log.format", "yaml", CHOICES),
            Err("log.format \"yaml\" is not one of: text, json".to_owned())
        );
    }
}
