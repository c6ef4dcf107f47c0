//! [`error_codes!`](crate::error_codes): the macro that defines a table of error codes once.
//! The host's table is in `codes.rs`; the admin API defines its HTTP-only codes with the same
//! macro. Pure: no I/O, no HTTP types (a status is a plain `u16`).

/// Defines an enum of error codes from one table: each row gives the code's variant, its
/// snake_case string, its HTTP status, its meaning (the doc comment) and the fields of its
/// `details`, so that a code cannot exist without any of them.
///
/// The enum gets `ALL` (every code, in table order), `as_str`, `http_status`, `meaning`,
/// `details_fields` and `Display`. `docs/error-codes.md` is generated from these.
///
/// ```
/// plugin_host::error_codes! {
///     /// Codes of a small API.
///     pub enum MyCode {
///         /// The token is missing or wrong.
///         Unauthorized = "unauthorized", 401, {};
///         /// The body is over the limit.
///         TooLarge = "too_large", 413, { limit: "the limit in bytes" };
///     }
/// }
/// assert_eq!(MyCode::TooLarge.as_str(), "too_large");
/// assert_eq!(MyCode::TooLarge.http_status(), 413);
/// assert_eq!(MyCode::TooLarge.details_fields(), &[("limit", "the limit in bytes")]);
/// assert_eq!(MyCode::ALL.len(), 2);
/// ```
///
/// A row without its status or its details does not compile:
///
/// ```compile_fail
/// plugin_host::error_codes! {
///     /// Codes of a small API.
///     pub enum MyCode {
///         /// The token is missing or wrong.
///         Unauthorized = "unauthorized";
///     }
/// }
/// ```
#[macro_export]
macro_rules! error_codes {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $(
                $(#[doc = $doc:literal])+
                $variant:ident = $code:literal, $status:literal,
                    { $($field:ident: $field_doc:literal),* $(,)? };
            )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        $vis enum $name {
            $(
                #[doc = concat!("`", $code, "` (HTTP ", stringify!($status), "):")]
                $(#[doc = $doc])+
                $variant,
            )+
        }

        impl $name {
            /// Every code, in table order.
            $vis const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The snake_case code, stable across releases: a released one is never renamed
            /// or reused.
            $vis const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $code,)+
                }
            }

            /// The HTTP status the admin API answers an error of this code with.
            $vis const fn http_status(self) -> u16 {
                match self {
                    $(Self::$variant => $status,)+
                }
            }

            /// What the code means, in one paragraph (the text of `docs/error-codes.md`).
            $vis const fn meaning(self) -> &'static str {
                match self {
                    $(Self::$variant => concat!($($doc),+),)+
                }
            }

            /// The fields of the error body's `details` for this code, each with what it
            /// holds (empty when the code has no details).
            $vis const fn details_fields(self) -> &'static [(&'static str, &'static str)] {
                match self {
                    $(Self::$variant => &[$((stringify!($field), $field_doc)),*],)+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
