package c8y

import "strings"

// splitCSV splits one SmartREST line into its fields. A field is either
// plain text without '"', ',' or line ends, or enclosed in '"', where ""
// stands for one '"' and any other byte, ',' included, is itself.
//
// encoding/csv would do, but it reads several records from a stream; a
// SmartREST message is one line, and its errors should name SmartREST.
func splitCSV(line string) ([]string, error) {
	var fields []string
	for {
		if strings.HasPrefix(line, `"`) {
			var b strings.Builder
			i := 1
			for {
				j := strings.IndexByte(line[i:], '"')
				if j < 0 {
					return nil, newError(ErrBadOperation,
						"c8y: SmartREST field %d has no closing quote", len(fields))
				}
				b.WriteString(line[i : i+j])
				i += j + 1
				if i < len(line) && line[i] == '"' {
					b.WriteByte('"')
					i++
					continue
				}
				break
			}
			fields = append(fields, b.String())
			line = line[i:]
			if line == "" {
				return fields, nil
			}
			if line[0] != ',' {
				return nil, newError(ErrBadOperation,
					`c8y: SmartREST field %d has text after its closing quote; write a quote inside a quoted field as ""`,
					len(fields)-1)
			}
			line = line[1:]
			continue
		}
		field, rest, more := strings.Cut(line, ",")
		if strings.ContainsAny(field, "\r\n") {
			return nil, newError(ErrBadOperation,
				"c8y: SmartREST line holds a line break in field %d; give one message per line", len(fields))
		}
		if strings.Contains(field, `"`) {
			return nil, newError(ErrBadOperation,
				`c8y: SmartREST field %d has a quote but does not start with one; quote the whole field and double the quote`,
				len(fields))
		}
		fields = append(fields, field)
		if !more {
			return fields, nil
		}
		line = rest
	}
}

// quoteCSV encloses s in quotes for a SmartREST field, doubling its quotes.
func quoteCSV(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}
